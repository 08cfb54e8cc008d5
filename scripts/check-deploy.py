#!/usr/bin/env python3
"""Checks the deploy/ files against the real server, without Docker or Kubernetes.

    python3 scripts/check-deploy.py target/debug/roomcast

Every YAML file under deploy/ must parse (PyYAML; Debian: python3-yaml). For
every container that runs the roomcast image (compose services, and pods of
Kubernetes Deployments, StatefulSets and Jobs), the settings it would start
with -- the image's ENV from deploy/Dockerfile, the service's or container's
environment, its command/args, and a ConfigMap's TOML mounted where `--config`
points -- are handed to `roomcast check-config`, the server's own config
loader and startup checks (`Config::resolve` + `Config::check`), which must
accept them. A few structural rules are checked too: the ScyllaDB compose
file has three ScyllaDB nodes with the documented flags, a one-shot migrate
service that roomcast waits for, roomcast's contact points are those nodes,
health checks use /ready (and Kubernetes liveness /health), and roomcast on
the Scylla Operator points at the ScyllaCluster's client service.

Not checked (cannot be, here): that the images pull, that the containers start,
that ScyllaDB forms a cluster, that the operator accepts the ScyllaCluster.
Exit status 0 when everything passed; each failure is printed.
"""
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILURES = []
CHECKED = []
# A stand-in for secrets that only exist in a cluster (secretKeyRef).
SECRET_PLACEHOLDER = "check-deploy-placeholder-secret-0123456789"


def fail(msg):
    FAILURES.append(msg)
    print(f"FAIL {msg}")


def dockerfile():
    """The image's ENV and its default command."""
    text = open(os.path.join(ROOT, "deploy", "Dockerfile")).read()
    text = re.sub(r"\\\n", " ", text)
    env, cmd = {}, ["serve"]
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("ENV "):
            for part in shlex.split(line[4:]):
                k, _, v = part.partition("=")
                env[k] = v
        elif line.startswith("CMD "):
            cmd = yaml.safe_load(line[4:])
    return env, cmd


def interpolate(value):
    """Compose's ${VAR:-default} / ${VAR}: the default (the host's env is not ours)."""
    def sub(m):
        inner = m.group(1)
        if ":-" in inner:
            return inner.split(":-", 1)[1]
        if "-" in inner:
            return inner.split("-", 1)[1]
        return ""
    return re.sub(r"\$\{([^}]*)\}", sub, str(value))


def is_roomcast(image):
    return bool(image) and image.split("@")[0].split(":")[0].split("/")[-1] == "roomcast"


def run_check(where, args, env, files):
    """`roomcast check-config` with the container's args and env; `files` maps
    in-container paths to contents (mounted ConfigMaps)."""
    sub, rest = (args[0], list(args[1:])) if args else ("serve", [])
    if sub not in ("serve", "migrate"):
        fail(f"{where}: unexpected roomcast subcommand {sub!r}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        mapping = {}
        for path, content in files.items():
            local = os.path.join(tmp, path.strip("/").replace("/", "_"))
            with open(local, "w") as f:
                f.write(content)
            mapping[path] = local
        rest = [mapping.get(a, a) for a in rest]
        env = {k: mapping.get(v, v) for k, v in env.items()}
        for i, a in enumerate(rest):
            if a == "--config" and i + 1 < len(rest) and not os.path.exists(rest[i + 1]):
                fail(f"{where}: --config {rest[i + 1]} is not a mounted ConfigMap file")
                return
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        full_env.update(env)
        out = subprocess.run([BIN, "check-config", *rest], env=full_env,
                             capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"{where} ({sub}): refused by roomcast check-config: {out.stderr.strip()}")
    else:
        CHECKED.append(where)
        print(f"ok   {where} ({sub}): {out.stdout.strip()}")
    return out.stdout


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: interpolate(v) for k, v in env.items()}


def check_compose(path, doc):
    name = os.path.relpath(path, ROOT)
    image_env, image_cmd = dockerfile()
    services = doc.get("services") or {}
    summaries = {}
    for sname, s in services.items():
        if not is_roomcast(s.get("image")) and "build" not in s:
            continue
        cmd = s.get("command", image_cmd)
        if isinstance(cmd, str):
            cmd = shlex.split(cmd)
        env = dict(image_env)
        env.update(compose_env(s))
        summaries[sname] = (cmd, env, run_check(f"{name} service {sname}", cmd, env, {}))
        hc = s.get("healthcheck")
        if cmd[:1] in (["serve"], []) and not (hc and "/ready" in " ".join(map(str, hc.get("test", [])))):
            fail(f"{name} service {sname}: serve without a /ready healthcheck")
    scyllas = {n: s for n, s in services.items()
               if str(s.get("image", "")).startswith("scylladb/scylla")}
    if not scyllas:
        return
    # The ScyllaDB compose file: three nodes, one-shot migrate first, roomcast on the three.
    if len(scyllas) != 3:
        fail(f"{name}: {len(scyllas)} ScyllaDB nodes, want 3")
    for n, s in scyllas.items():
        c = " ".join(map(str, s.get("command", [])))
        for flag in ("--smp 1", "--memory 750M", "--overprovisioned 1"):
            if flag not in c:
                fail(f"{name} {n}: command lacks {flag}")
        if not s.get("healthcheck"):
            fail(f"{name} {n}: no healthcheck")
    migrates = [n for n, (cmd, _, _) in summaries.items() if cmd[:1] == ["migrate"]]
    serves = [n for n, (cmd, _, _) in summaries.items() if cmd[:1] == ["serve"]]
    if len(migrates) != 1 or not serves:
        fail(f"{name}: want one migrate service and a serve service, got {migrates} {serves}")
        return
    for sv in serves:
        dep = (services[sv].get("depends_on") or {}).get(migrates[0]) or {}
        if dep.get("condition") != "service_completed_successfully":
            fail(f"{name} {sv}: must depend on {migrates[0]} with service_completed_successfully")
        for n in [migrates[0], sv]:
            env = summaries[n][1]
            nodes = sorted(h.split(":")[0] for h in env.get("ROOMCAST_SCYLLA_NODES", "").split(","))
            if env.get("ROOMCAST_STORE") != "scylla" or nodes != sorted(scyllas):
                fail(f"{name} {n}: want --store scylla on {sorted(scyllas)}, got {env.get('ROOMCAST_STORE')} {nodes}")
    for n in migrates:
        needs = set((services[n].get("depends_on") or {}).keys())
        if not set(scyllas) <= needs:
            fail(f"{name} {n}: must wait for every ScyllaDB node, waits for {sorted(needs)}")


def check_k8s(path, docs):
    name = os.path.relpath(path, ROOT)
    configmaps = {d["metadata"]["name"]: d.get("data") or {}
                  for d in docs if d.get("kind") == "ConfigMap"}
    clusters = [d for d in docs if d.get("kind") == "ScyllaCluster"]
    for d in docs:
        kind = d.get("kind")
        if kind not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod.get("containers", []):
            if not is_roomcast(c.get("image")):
                continue
            where = f"{name} {kind}/{d['metadata']['name']} container {c['name']}"
            env = dict(dockerfile()[0])
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                elif "secretKeyRef" in (e.get("valueFrom") or {}):
                    env[e["name"]] = SECRET_PLACEHOLDER
            files = {}
            for m in c.get("volumeMounts", []):
                cm = (volumes.get(m["name"]) or {}).get("configMap")
                if cm:
                    if cm["name"] not in configmaps:
                        fail(f"{where}: ConfigMap {cm['name']} is not in {name}")
                        continue
                    for key, content in configmaps[cm["name"]].items():
                        files[m["mountPath"].rstrip("/") + "/" + key] = content
            args = c.get("args") or dockerfile()[1]
            run_check(where, args, env, files)
            if args[:1] == ["serve"] and kind != "Job":
                r = (c.get("readinessProbe") or {}).get("httpGet", {}).get("path")
                l = (c.get("livenessProbe") or {}).get("httpGet", {}).get("path")
                if (r, l) != ("/ready", "/health"):
                    fail(f"{where}: probes {r}/{l}, want /ready (readiness) and /health (liveness)")
            for path_, content in files.items():
                if not path_.endswith(".toml") or not clusters:
                    continue
                toml = tomllib.loads(content)
                want = {f"{k['metadata']['name']}-client.{k['metadata'].get('namespace', d['metadata'].get('namespace'))}.svc:9042"
                        for k in clusters}
                if toml.get("store") != "scylla" or toml.get("scylla_nodes") not in want:
                    fail(f"{where}: store {toml.get('store')} at {toml.get('scylla_nodes')}, want scylla at one of {sorted(want)}")
    if clusters and not any(d.get("kind") == "Job" for d in docs):
        fail(f"{name}: a ScyllaCluster without a migrate Job")


def main():
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "*.y*ml"), recursive=True))
    if not files:
        fail("no YAML files under deploy/")
    for path in files:
        try:
            docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        except yaml.YAMLError as e:
            fail(f"{os.path.relpath(path, ROOT)}: does not parse: {e}")
            continue
        print(f"parsed {os.path.relpath(path, ROOT)} ({len(docs)} documents)")
        if len(docs) == 1 and "services" in docs[0]:
            check_compose(path, docs[0])
        else:
            check_k8s(path, docs)
    print(f"{len(CHECKED)} roomcast configurations accepted, {len(FAILURES)} failures")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: check-deploy.py PATH/TO/roomcast")
    BIN = os.path.abspath(sys.argv[1])
    sys.exit(main())
