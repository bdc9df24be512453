"""ngx_example.py - the example server, started for a test or a benchmark.

`ExampleServer` fills bindings/lua/examples/nginx.conf.in, adds one
location of the caller's (a test endpoint, a benchmark endpoint) before
/ping, starts nginx in a fresh prefix and waits until /ping answers. Used
by tests/lua/nginx_fault_test.py and bench/openresty/measure.py (the shell
tests have the same in ngx_lib.sh). Standard library only.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "bindings", "lua", "examples")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ExampleServer:
    """nginx with the example's config plus `location` (nginx text placed
    before /ping), Lua modules from build, the examples and lua_dir.
    Raises RuntimeError when nginx exits at startup or does not answer
    /ping within 10 s."""

    def __init__(self, build, dsn, env, lua_dir, location, tag="pgspout-ngx", nginx="nginx"):
        self.prefix = tempfile.mkdtemp(prefix=tag + ".")
        os.makedirs(os.path.join(self.prefix, "logs"))
        os.makedirs(os.path.join(self.prefix, "tmp"))
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        mod = os.path.join(build, "bindings", "lua")
        with open(os.path.join(EXAMPLES, "nginx.conf.in")) as f:
            conf = f.read()
        for k, v in {"@PREFIX@": self.prefix, "@PORT@": str(self.port),
                     "@LUA_PATH@": f"{mod}/?.lua;{EXAMPLES}/?.lua;{lua_dir}/?.lua",
                     "@LUA_CPATH@": f"{mod}/?.so",
                     "@USER@": "user root;" if os.getuid() == 0 else ""}.items():
            conf = conf.replace(k, v)
        anchor = "        location = /ping {"
        if anchor not in conf:
            raise RuntimeError("nginx.conf.in has no /ping location")
        conf = conf.replace(anchor, location + "\n" + anchor, 1)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.errlog = os.path.join(self.prefix, "logs", "error.log")
        e = dict(os.environ)
        e.update(env)
        e["PGSPOUT_DSN"] = dsn
        self.proc = subprocess.Popen([nginx, "-p", self.prefix, "-c", self.conf, "-e", self.errlog],
                                     env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                with urllib.request.urlopen(self.base + "/ping", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited at startup:\n" + self.tail())
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("nginx did not answer /ping")

    def tail(self, n=30):
        """the last n lines of error.log"""
        try:
            with open(self.errlog, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """stops nginx (the prefix stays: cleanup removes it)"""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        shutil.rmtree(self.prefix, ignore_errors=True)
