"""The world the example pipeline acts on, as one small HTTP server:

- a registry: `PUT /v2/app/<tag>` (needs `Authorization: Bearer <token>`,
  the token in --token-file, refused once --token-expires has passed) and
  `GET /v2/app/<tag>`, answering with `Docker-Content-Digest: sha256:…`;
- two hosts, staging and production: `POST /deploy/<env>?version=<tag>`
  with the artifact (a zipapp) as the body starts it serving on the
  environment's port (the previous version is kept for a rollback);
  `POST /rollback/<env>` goes back to the previous version;
  `GET /status/<env>` says what is deployed.

Every push, deploy and rollback is appended to --log, one line each, for
people and tests to read. What each host runs (and ran before) is kept in
--state, so a world started again on the same state resumes serving it —
a rollback in a later run goes back to what an earlier run deployed.
`GET /healthz` answers once it listens.
"""

import argparse
import datetime
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    def __init__(self, state_dir, token_file, token_expires, log):
        self.dir = state_dir
        self.token_file = token_file
        self.token_expires = token_expires
        self.log_path = log
        self.lock = threading.Lock()
        self.hosts = {env: {"port": free_port(), "proc": None, "current": None, "previous": None}
                      for env in ("staging", "production")}
        os.makedirs(os.path.join(self.dir, "registry"), exist_ok=True)
        self.resume()

    def saved(self, env):
        return os.path.join(self.dir, f"{env}.json")

    def resume(self):
        """Serves again what each host ran when the world last stopped."""
        for env, host in self.hosts.items():
            try:
                with open(self.saved(env)) as f:
                    saved = json.load(f)
            except FileNotFoundError:
                continue
            for which in ("current", "previous"):
                meta = saved.get(which)
                if meta:
                    with open(meta["path"], "rb") as f:
                        host[which] = dict(meta, data=f.read())
            if host["current"]:
                self.start(env, host["current"]["path"])

    def save(self, env):
        host = self.hosts[env]
        strip = lambda v: {k: x for k, x in v.items() if k != "data"} if v else None  # noqa: E731
        with open(self.saved(env), "w") as f:
            json.dump({"current": strip(host["current"]), "previous": strip(host["previous"])}, f)

    def start(self, env, path):
        host = self.hosts[env]
        if host["proc"] is not None:
            host["proc"].terminate()
            host["proc"].wait()
        host["proc"] = subprocess.Popen(
            [sys.executable, path, "--port", str(host["port"])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def log(self, line):
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def token_ok(self, header):
        expires = datetime.datetime.fromisoformat(self.token_expires.replace("Z", "+00:00"))
        if datetime.datetime.now(datetime.timezone.utc) >= expires:
            return False
        with open(self.token_file) as f:
            token = f.read().strip()
        return header == f"Bearer {token}"

    def deploy(self, env, version, data, rollback=False):
        host = self.hosts[env]
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = os.path.join(self.dir, f"{env}-{digest[7:19]}.pyz")
        with open(path, "wb") as f:
            f.write(data)
        self.start(env, path)
        if not rollback:
            host["previous"] = host["current"]
        host["current"] = {"version": version, "digest": digest, "data": data, "path": path}
        self.save(env)
        self.log(f"{'rollback' if rollback else 'deploy'} {env} {version} {digest}")
        return {"env": env, "version": version, "digest": digest, "port": host["port"]}

    def stop(self):
        for host in self.hosts.values():
            if host["proc"] is not None:
                host["proc"].terminate()


def handler(world):
    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status, body, headers=None):
            data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            return self.rfile.read(int(self.headers.get("content-length", "0")))

        def do_GET(self):  # noqa: N802
            url = urllib.parse.urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/healthz":
                return self.reply(200, {"ok": True})
            if url.path == "/ports":
                return self.reply(200, {env: h["port"] for env, h in world.hosts.items()})
            if len(parts) == 3 and parts[:2] == ["v2", "app"]:
                path = os.path.join(world.dir, "registry", parts[2])
                if not os.path.exists(path):
                    return self.reply(404, {"error": f"no tag {parts[2]}"})
                data = open(path, "rb").read()
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                return self.reply(200, data, {"Docker-Content-Digest": digest})
            if len(parts) == 2 and parts[0] == "status" and parts[1] in world.hosts:
                cur = world.hosts[parts[1]]["current"]
                return self.reply(200, {k: v for k, v in (cur or {}).items() if k != "data"})
            return self.reply(404, {"error": "not found"})

        def do_PUT(self):  # noqa: N802
            parts = self.path.strip("/").split("/")
            data = self.body()
            if not (len(parts) == 3 and parts[:2] == ["v2", "app"]):
                return self.reply(404, {"error": "not found"})
            if not world.token_ok(self.headers.get("Authorization", "")):
                world.log(f"push refused {parts[2]} (bad or expired token)")
                return self.reply(401, {"error": "bad or expired token"})
            with world.lock:
                with open(os.path.join(world.dir, "registry", parts[2]), "wb") as f:
                    f.write(data)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            world.log(f"push app:{parts[2]} {digest}")
            return self.reply(201, {"digest": digest})

        def do_POST(self):  # noqa: N802
            url = urllib.parse.urlparse(self.path)
            parts = url.path.strip("/").split("/")
            data = self.body()
            if len(parts) != 2 or parts[1] not in world.hosts:
                return self.reply(404, {"error": "not found"})
            env = parts[1]
            with world.lock:
                if parts[0] == "deploy":
                    version = urllib.parse.parse_qs(url.query).get("version", ["unknown"])[0]
                    return self.reply(200, world.deploy(env, version, data))
                if parts[0] == "rollback":
                    prev = world.hosts[env]["previous"]
                    if prev is None:
                        world.log(f"rollback {env} refused (nothing to go back to)")
                        return self.reply(409, {"error": "nothing to roll back to"})
                    return self.reply(200, world.deploy(env, prev["version"], prev["data"], True))
            return self.reply(404, {"error": "not found"})

        def log_message(self, *args):
            pass

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--state", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--token-expires", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--port-file", required=True)
    args = p.parse_args()
    # Stopped with SIGTERM (by ./run): the hosts' apps go with the world.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    world = World(args.state, args.token_file, args.token_expires, args.log)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(world))
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    finally:
        world.stop()


if __name__ == "__main__":
    main()
