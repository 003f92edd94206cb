# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# UDP for live tests: a bounded, paced sender and a listener that counts.
# Both bind to a device (SO_BINDTODEVICE) so that traffic stays on the
# test's own link; datagrams carry a RAYOS-TEST marker.
# send SRC_PORT DST DST_PORT DEV COUNT GAP_S
# listen PORT DEV SECONDS READY_FILE [EXPECT]: count datagrams until SECONDS
# pass or EXPECT arrived
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sys.argv[1] == "send":
    sport, dst, dport, dev, count, gap = sys.argv[2:8]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.bind(("0.0.0.0", int(sport)))
    for _ in range(int(count)):
        try:    # a drop on the sender's own egress hook shows as ENOBUFS
            s.sendto(b"RAYOS-TEST" + bytes(90), (dst, int(dport)))
        except OSError:
            pass
        time.sleep(float(gap))
else:
    port, dev, secs, ready = sys.argv[2:6]
    expect = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.bind(("0.0.0.0", int(port)))
    open(ready, "w").close()
    n, end = 0, time.time() + float(secs)
    while (left := end - time.time()) > 0 and (not expect or n < expect):
        s.settimeout(left)
        try:
            n += s.recv(2048).startswith(b"RAYOS-TEST")
        except socket.timeout:
            break
    print(n)
