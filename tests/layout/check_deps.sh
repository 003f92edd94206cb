#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The include graph between the user-side folders, derived from the compiler
# (cc -MM), checked against tests/layout/allowed-edges: fails on an edge the
# list does not name and on any cycle between folders.
#
#   tests/layout/check_deps.sh [TREE] [ALLOWED]
#
# A folder ("room") is the directory of a file: agent/core, agent/dhcp,
# loader, bpf/abi ...; agent/ itself holds only the wiring (main, daemon).
# Generated skeletons (*.skel.h) count as the room "bpf".  Prints
# each room's edges with one include that makes it, then OK or what is wrong.
set -uo pipefail
tree=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
allowed=${2:-$tree/tests/layout/allowed-edges}
cd "$tree" || exit 2
CC=${CC:-cc}

# room PATH: sets ROOM (no subshell: it runs for every include of every file).
room() {
	local p=${1#"$tree"/}
	case $p in
	*.skel.h) ROOM=bpf ;;
	*/*) ROOM=${p%/*} ;;
	*) ROOM=. ;;
	esac
}

declare -A edge_why=()
srcs=$(git ls-files 'agent/*.c' 'loader/*.c' 'qemu-hooks/*.c' 2>/dev/null ||
       find agent loader qemu-hooks -name '*.c')
# -MM: the headers each file really includes (after the preprocessor),
# system headers left out; one compiler run for all of them.  A rule reads
# "x.o: SOURCE HEADER...", continued over lines.  The generated skeletons
# are not on the include path: -MG names them without reading them (they
# embed whole BPF objects), so the check needs no build either.
rules=$($CC -MM -MG -D_GNU_SOURCE -I. $srcs 2>&1) || {
	echo "check_deps: cannot preprocess: $rules" >&2
	exit 2
}
while read -r _ src deps; do
	room "$src"; from=$ROOM
	for d in $deps; do
		d=${d#./}
		[[ $d == *..* || $d == /* ]] && d=$(realpath -m --relative-to="$tree" "$d")
		[[ $d == ../* ]] && continue	# outside the tree
		room "$d"; to=$ROOM
		[[ $to == "$from" ]] && continue
		[[ -n ${edge_why["$from -> $to"]:-} ]] || edge_why["$from -> $to"]="$src includes $d"
	done
done < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' <<<"$rules")

declare -A ok_edge=()
while read -r line; do
	line=${line%%#*}
	[[ $line =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]*-\>[[:space:]]*([^[:space:]]+) ]] || continue
	ok_edge["${BASH_REMATCH[1]} -> ${BASH_REMATCH[2]}"]=1
done <"$allowed"

bad=0
for e in $(printf '%s\n' "${!edge_why[@]}" | sed 's/ -> /->/' | sort); do
	e=${e/->/ -> }
	if [[ -n ${ok_edge[$e]:-} ]]; then
		echo "edge   $e    ($(cut -d' ' -f1,3 <<<"${edge_why[$e]}" | sed 's/ / includes /'))"
	else
		echo "FORBIDDEN $e: ${edge_why[$e]} (not in ${allowed#"$tree"/})"
		bad=1
	fi
done

# Cycles between rooms: depth-first search over the edges found.
declare -A adj=() color=()
for e in "${!edge_why[@]}"; do
	adj[${e%% -> *}]+="${e##* -> } "
done
cycle=""
visit() {	# visit ROOM PATH...: gray while on the stack
	local r=$1 n; shift
	color[$r]=gray
	for n in ${adj[$r]:-}; do
		if [[ ${color[$n]:-} == gray ]]; then
			cycle="$* $r $n"
			return 1
		fi
		if [[ -z ${color[$n]:-} ]]; then
			visit "$n" "$@" "$r" || return 1
		fi
	done
	color[$r]=black
}
for r in "${!adj[@]}"; do
	if [[ -z ${color[$r]:-} ]] && ! visit "$r"; then
		echo "CYCLE between folders: $(sed 's/^ *//; s/ / -> /g' <<<"$cycle")"
		bad=1
		break
	fi
done
((bad)) && exit 1
echo "OK: ${#edge_why[@]} edges between folders, all allowed, no cycle"
