#!/bin/bash
# usage: try.sh LIB LOOP [python flags] -- loadgen args...
lib=$1; loop=$2; shift 2
rm -f .build/s.out
(.venv/bin/python $PYFLAGS suite_servers.py $lib $loop --cpu 0 > .build/s.out 2> .build/s-$lib-$loop.err &)
for i in $(seq 50); do grep -q PORT .build/s.out 2>/dev/null && break; sleep 0.1; done
P=$(awk '{print $2}' .build/s.out)
while [ $# -gt 0 ]; do .build/loadgen $1 --port $P --cpu 1 | python3 -c "import json,sys; d=json.load(sys.stdin); print({k:d.get(k) for k in ('ok','mode','window','text','rate','mbps','cpu_share','p50_us','p99_us','timeouts','error')})"; shift; done
pkill -f "suite_servers.py $lib $loop"; sleep 0.3
