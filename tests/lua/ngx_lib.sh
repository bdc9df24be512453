# ngx_lib.sh - sourced by nginx_test.sh and browser_test.sh: the example
# server (bindings/lua/examples/nginx.conf.in) in a fresh prefix, as
# tests/lua/ngx_example.py starts it for the Python tests.

# The first line of an nginx.conf: as root, workers must run as root too
# (they read the build and the prefix).
ngx_user_line=""
[ "$(id -u)" = 0 ] && ngx_user_line="user root;"

# ngx_free_port: a free TCP port on 127.0.0.1
ngx_free_port() {
  "${PY:-/usr/bin/python3}" -c \
    'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ngx_example_start PREFIX MOD EXAMPLES: fill the example's config into
# PREFIX (Lua modules from MOD and EXAMPLES), check it with nginx -t, start
# $NGINX with PGSPOUT_DSN=$PGSPOUT_TEST_DSN and wait until /ping answers.
# Sets port, base and nginx_pid (the caller's cleanup stops it); calls the
# caller's fail on an error.
ngx_example_start() {
  local prefix=$1 mod=$2 examples=$3
  port=$(ngx_free_port)
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" \
    -e "s|@LUA_PATH@|$mod/?.lua;$examples/?.lua|g" -e "s|@LUA_CPATH@|$mod/?.so|g" \
    -e "s|@USER@|$ngx_user_line|g" "$examples/nginx.conf.in" >"$prefix/nginx.conf"
  "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
    || fail "nginx -t rejected the example config"
  PGSPOUT_DSN=$PGSPOUT_TEST_DSN "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" \
    -e "$prefix/logs/error.log" &
  nginx_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "$base/ping" 2>/dev/null && break
    kill -0 "$nginx_pid" 2>/dev/null || fail "nginx exited at startup"
    sleep 0.1
  done
  [ "$(curl -fsS "$base/ping")" = pong ] || fail "/ping"
}
