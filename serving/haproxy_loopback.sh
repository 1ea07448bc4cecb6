#!/bin/sh
# Installed by sftune (serving/haproxy.py) as RAY_SERVE_HAPROXY_BINARY_PATH, with the real
# HAProxy's path in place of @HAPROXY@. Ray binds HAProxy's stats and metrics pages to every
# interface ('bind *:PORT', 'bind :PORT'); run HAProxy on a copy of its config with those on
# 127.0.0.1. The client-facing frontend names its host and is left as Ray wrote it. exec keeps
# the pid, which Ray checks through the admin socket.
prev=
for arg do
  if [ "$prev" = "-f" ]; then
    sed -E 's/^([[:space:]]*bind[[:space:]]+)[*]?:([0-9]+)([[:space:]]|$)/\1127.0.0.1:\2\3/' \
      "$arg" > "$arg.loopback.tmp" && mv -f "$arg.loopback.tmp" "$arg.loopback" || exit 1
    arg="$arg.loopback"
  fi
  set -- "$@" "$arg"
  prev=$arg
done
shift $(( $# / 2 ))
exec '@HAPROXY@' "$@"
