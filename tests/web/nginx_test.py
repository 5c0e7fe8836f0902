#!/usr/bin/env python3
"""The documented public deployment, run for real: ebm-serve on 127.0.0.1 behind Debian's nginx
with deploy/nginx/ebm-serve.conf as written (only its two ports replaced), attacked through
nginx as in issue 12: 200 idle and 200 slowloris connections while a normal GET must answer
within 1 s every time; then a model download checked by its SHA-256, Range amplification, an
unauthenticated upload refused before its body, an oversized header, and a real publish.

usage: nginx_test.py --serve EBM_SERVE --nginx NGINX --config CONF --model MODEL --work DIR
"""
import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def request(port, raw, timeout=5.0):
    """Sends raw bytes, reads until close; returns (status, headers text, body bytes, seconds)."""
    t0 = time.monotonic()
    with connect(port, timeout) as s:
        s.sendall(raw)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head[9:12]) if len(head) >= 12 else 0
    return status, head.decode("latin-1"), body, time.monotonic() - t0


def get(port, path, extra=""):
    return request(port, f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n".encode())


def wait_for(port, what, proc, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode} before answering")
        try:
            if get(port, "/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not answer GET /health on port {port} within {seconds} s")


def main():
    ap = argparse.ArgumentParser()
    for a in ("serve", "nginx", "config", "model", "work"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()

    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    for d in ("site", "models", "nginx/logs", "nginx/tmp"):
        os.makedirs(os.path.join(work, d))
    with open(os.path.join(work, "site/index.html"), "w") as f:
        f.write("<!doctype html><title>ebm</title>")
    model = open(args.model, "rb").read()
    with open(os.path.join(work, "models/bridges.safetensors"), "wb") as f:
        f.write(model)
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
        f.write("nginx-test-token\n")

    serve_port, nginx_port = free_port(), free_port()
    conf = open(args.config).read()
    for old, new in (("server 127.0.0.1:8080;", f"server 127.0.0.1:{serve_port};"),
                     ("listen 80;", f"listen 127.0.0.1:{nginx_port};")):
        if old not in conf:
            sys.exit(f"{args.config} no longer contains '{old}': update this test")
        conf = conf.replace(old, new)
    tmp = os.path.join(work, "nginx/tmp")
    # The wrapper a Debian host has in /etc/nginx/nginx.conf, reduced to what a test needs.
    main_conf = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{conf}
}}
"""
    conf_path = os.path.join(work, "nginx/nginx.conf")
    with open(conf_path, "w") as f:
        f.write(main_conf)

    serve = subprocess.Popen([args.serve, "--web", os.path.join(work, "site"), "--models",
                              os.path.join(work, "models"), "--host", "127.0.0.1", "--port",
                              str(serve_port), "--publish-token-file", token_file],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
    nginx = subprocess.Popen([args.nginx, "-p", os.path.join(work, "nginx"), "-c", conf_path,
                              "-e", os.path.join(work, "nginx/logs/error.log"), "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(serve_port, "ebm-serve", serve)
        wait_for(nginx_port, "nginx", nginx)
        attack(nginx_port)
        behaviours(nginx_port, model)
        check(serve.poll() is None, "ebm-serve still running after the attack")
    finally:
        for p in (nginx, serve):
            p.send_signal(signal.SIGTERM if p is serve else signal.SIGQUIT)
        for p in (nginx, serve):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed; logs in {work}")
        return 1
    print("all checks passed")
    return 0


def attack(port):
    idle = [connect(port) for _ in range(200)]
    slow = []
    for _ in range(200):
        s = connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n")
        slow.append(s)
    done = threading.Event()

    def drip():
        k = 0
        while not done.is_set():
            for s in slow:
                try:
                    s.sendall(f"X-Drip-{k}: 1\r\n".encode())
                except OSError:
                    pass
            k += 1
            done.wait(0.5)

    t = threading.Thread(target=drip)
    t.start()
    time.sleep(0.3)
    times = []
    for _ in range(8):
        status, _, _, secs = get(port, "/health")
        times.append(secs if status == 200 else float("inf"))
        time.sleep(0.25)
    done.set()
    t.join()
    for s in idle + slow:
        s.close()
    check(all(s < 1.0 for s in times),
          "through nginx, with 200 idle + 200 slowloris connections open, 8 of 8 GET /health "
          f"answered within 1 s (slowest {max(times):.3f} s)")


def behaviours(port, model):
    status, head, body, _ = get(port, "/models/bridges.safetensors")
    check(status == 200 and hashlib.sha256(body).hexdigest() == hashlib.sha256(model).hexdigest(),
          f"the model through nginx is byte for byte the file (status {status}, {len(body)} bytes)")

    ranges = "bytes=0-" + ",0-" * 999
    status, head, body, _ = get(port, "/models/bridges.safetensors", f"Range: {ranges}\r\n")
    check(status == 200 and len(body) == len(model),
          f"1000 overlapping ranges through nginx get the file once ({status}, {len(body)} bytes)")

    t0 = time.monotonic()
    with connect(port, 3) as s:
        s.sendall(b"PUT /api/models/x HTTP/1.1\r\nHost: test\r\nContent-Length: 62914560\r\n"
                  b"Content-Type: application/octet-stream\r\n\r\n")
        data = s.recv(4096)
    check(data[9:12] == b"401" and time.monotonic() - t0 < 1.0,
          f"a 60 MiB upload without a token is refused (401) before its body is sent: {data[:12]!r}")

    big = "".join(f"X-Big-{i}: {'a' * 8000}\r\n" for i in range(8))
    status, _, _, _ = get(port, "/health", big)
    check(status in (400, 431), f"an oversized request header is refused ({status})")

    put = (b"PUT /api/models/published HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
           b"Authorization: Bearer nginx-test-token\r\nContent-Type: application/octet-stream\r\n"
           + f"Content-Length: {len(model)}\r\n\r\n".encode() + model)
    status, _, body, _ = request(port, put)
    check(status == 201, f"publishing through nginx with the token stores the model ({status}: {body[:200]!r})")
    status, _, body, _ = get(port, "/models/published.safetensors")
    check(status == 200 and body == model, "the published model is served through nginx")


if __name__ == "__main__":
    sys.exit(main())
