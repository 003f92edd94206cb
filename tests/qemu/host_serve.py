# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# host_serve.py ADDR LOG PORT...: on each port answer "RAYOS-HOST-<port>"
# and append "<port> <peer>" to LOG; LOG.ready appears once all listen.
# Ends after 300 s (the tests kill it sooner).  Used through host_listen in
# tests/lib/lib.sh.
import socket, sys, threading, time
addr, log = sys.argv[1], open(sys.argv[2], "a", buffering=1)
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(8)
    while True:
        c, peer = s.accept()
        log.write(f"{port} {peer[0]}\n")
        c.sendall(f"RAYOS-HOST-{port}\n".encode()); c.close()
for p in sys.argv[3:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
open(sys.argv[2] + ".ready", "w").close()
time.sleep(300)
