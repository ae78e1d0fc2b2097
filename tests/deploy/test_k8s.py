#!/usr/bin/env python3
"""Checks deploy/k8s.

structure (default): the manifests parse (python3-yaml) and hold together the
way docs/DEPLOYMENT.md says they must: the daemon takes every GPU of the node
without requesting any from the device plugin, its socket directory is a
hostPath that the inference pods mount at the same place and may reach (gid),
the ConfigMap's ini has only the daemon's keys with valid values and agrees with
the mounts, probes and security context.

--schema [DIR]: every object against the Kubernetes schemas of
kubernetes-models (validate.mjs), and TypeScript's excess-property check
against its types (unknown or misspelt fields), with the packages that
deploy/k8s/validate/install.sh put in DIR (default: $WCODEC_K8S_VALIDATE, else
${XDG_CACHE_HOME:-~/.cache}/wcodec/k8s-validate, as install.sh). Offline.
Exit 77 if they or node are missing.

usage: test_k8s.py DEPLOY_K8S_DIR [--schema [DIR]]
"""
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("python3-yaml is not installed: skipped")
    sys.exit(77)

# [section] key -> a check of the value (None: any). The daemon's keys
# (docs/OPERATIONS.md, "Configure" and "GPU backend").
SIZE = re.compile(r"^[0-9]+[KMGT]?$")
DURATION = re.compile(r"^[0-9]+(ms|s|m|min|h)?$")
INI_KEYS = {
    "daemon": {"socket": None, "socket_mode": re.compile(r"^0[0-7]{3}$"), "threads": re.compile(r"^[0-9]+$"),
               "log_level": re.compile(r"^(error|warning|notice|info|debug)$"),
               "backend": re.compile(r"^(auto|gpu|cpu)$")},
    "security": {"roots": None, "allow_uids": None, "allow_gids": None},
    "cache": {"budget": SIZE, "max_models": re.compile(r"^[0-9]+$")},
    "limits": {k: None for k in ("max_frame", "max_leases", "max_connections", "max_inflight",
                                 "conn_out_bytes", "conn_fds")} |
              {k: DURATION for k in ("handshake_timeout", "idle_timeout", "send_timeout")},
    "gpu": {"devices": re.compile(r"^(all|((GPU-[0-9a-fA-F-]+|[0-9]+)(\s*,\s*(GPU-[0-9a-fA-F-]+|[0-9]+))*))$"),
            "budget": re.compile(r"^([0-9]+[KMGT]?|[0-9]{1,3}%)$"),
            "ipc": re.compile(r"^(vmm|legacy)$")},
}

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def pod_containers(spec):
    return spec.get("initContainers", []) + spec.get("containers", [])


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def parse_ini(text):
    ini = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"),
                                    inline_comment_prefixes=None, delimiters=("=",))
    ini.optionxform = str
    ini.read_string(text)
    for sec in ini.sections():
        if not check(sec in INI_KEYS, f"ini: unknown section [{sec}]"):
            continue
        for key, value in ini.items(sec):
            if not check(key in INI_KEYS[sec], f"ini: unknown key [{sec}] {key}"):
                continue
            rule = INI_KEYS[sec][key]
            check(rule is None or rule.match(value), f"ini: [{sec}] {key} = {value!r} is not valid")
    return ini


def check_daemonset(docs):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    check(sorted(by_kind) == ["ConfigMap", "DaemonSet", "Namespace"],
          f"daemonset file: expected a Namespace, a ConfigMap and a DaemonSet, found {sorted(by_kind)}")
    ns = by_kind["Namespace"][0]["metadata"]["name"]
    for d in docs:
        if d["kind"] != "Namespace":
            check(d["metadata"].get("namespace") == ns, f"{d['kind']} is not in namespace {ns}")
    ds = by_kind["DaemonSet"][0]
    cms = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    tmpl = ds["spec"]["template"]
    labels = tmpl["metadata"].get("labels", {})
    for k, v in ds["spec"]["selector"]["matchLabels"].items():
        check(labels.get(k) == v, f"DaemonSet selector {k}={v} does not match the pod template's labels")
    spec = tmpl["spec"]

    # Every GPU of the node, none taken from the device plugin.
    for c in pod_containers(spec):
        for part in ("requests", "limits"):
            for res in c.get("resources", {}).get(part, {}):
                check(not res.startswith("nvidia.com/"),
                      f"container {c['name']} {part} {res}: the daemon must not take GPUs from the device plugin")
    daemon = [c for c in spec["containers"] if c.get("command", [""])[0] == "wcodecd"]
    if not check(len(daemon) == 1, "no container runs wcodecd"):
        return None
    d = daemon[0]
    check(spec.get("runtimeClassName") == "nvidia", "runtimeClassName is not nvidia")
    check(env_of(d).get("NVIDIA_VISIBLE_DEVICES") == "all", "wcodecd: NVIDIA_VISIBLE_DEVICES is not all")
    check("compute" in (env_of(d).get("NVIDIA_DRIVER_CAPABILITIES") or ""),
          "wcodecd: NVIDIA_DRIVER_CAPABILITIES lacks compute")
    sc = d.get("securityContext", {})
    check(sc.get("allowPrivilegeEscalation") is False and not sc.get("privileged"),
          "wcodecd: privilege escalation or privileged")
    check(sc.get("capabilities", {}).get("drop") == ["ALL"] and not sc.get("capabilities", {}).get("add"),
          "wcodecd: capabilities not all dropped")

    # Volumes: every mount names a volume; the config comes from the ConfigMap here.
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in pod_containers(spec):
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"container {c['name']} mounts undeclared volume {m['name']}")
    mounts = {m["name"]: m for m in d.get("volumeMounts", [])}
    cmd = d["command"]
    conf_path = cmd[cmd.index("--config") + 1] if "--config" in cmd else None
    conf_mount = [m for m in mounts.values() if conf_path and conf_path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not check(len(conf_mount) == 1, f"--config {conf_path} is not in a mounted volume"):
        return None
    cm_name = volumes[conf_mount[0]["name"]].get("configMap", {}).get("name")
    if not check(cm_name in cms, f"the config volume names ConfigMap {cm_name}, not one in the file"):
        return None
    key = os.path.basename(conf_path)
    if not check(key in cms[cm_name]["data"], f"ConfigMap {cm_name} has no key {key}"):
        return None
    ini = parse_ini(cms[cm_name]["data"][key])

    # The socket: its directory is a hostPath mounted where the ini puts it,
    # owned (init container) by the group the ini allows; the probes use it.
    sock = ini.get("daemon", "socket", fallback="/run/wcodecd/wcodecd.sock")
    sock_dir = os.path.dirname(sock)
    sock_mounts = [m for m in mounts.values() if m["mountPath"].rstrip("/") == sock_dir]
    if not check(len(sock_mounts) == 1, f"no volume mounted at the socket's directory {sock_dir}"):
        return None
    sock_vol = volumes[sock_mounts[0]["name"]]
    check("hostPath" in sock_vol, "the socket directory is not a hostPath volume")
    check(not sock_mounts[0].get("readOnly"), "the socket directory is mounted read-only")
    gid = spec.get("securityContext", {}).get("runAsGroup")
    allow_gids = [g.strip() for g in re.split(r"[,:\s]+", ini.get("security", "allow_gids", fallback="")) if g.strip()]
    check(gid is not None and str(gid) in allow_gids, f"the pod's runAsGroup {gid} is not in allow_gids {allow_gids}")
    uid = spec.get("securityContext", {}).get("runAsUser")
    check(spec.get("securityContext", {}).get("runAsNonRoot") is True and uid not in (None, 0),
          "wcodecd does not run as a non-root uid")
    inits = [c for c in spec.get("initContainers", []) if any(m["name"] == sock_mounts[0]["name"]
                                                              for m in c.get("volumeMounts", []))]
    check(any(f"chown {uid}:{gid} {sock_dir}" in " ".join(c.get("command", [])) for c in inits),
          f"no init container gives {sock_dir} to {uid}:{gid} (kubelet creates it root 0755)")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        p = d.get(probe)
        if check(p is not None, f"wcodecd has no {probe}"):
            pc = p["exec"]["command"]
            check(pc[0] == "wcodecctl" and "--socket" in pc and pc[pc.index("--socket") + 1] == sock
                  and pc[-1] == "status", f"{probe} is not 'wcodecctl --socket {sock} ... status'")

    # Models: roots is the models hostPath, mounted read-only.
    roots = [r for r in re.split(r"[:,]", ini.get("security", "roots", fallback="")) if r.strip()]
    check(len(roots) >= 1, "ini: [security] roots is empty")
    for r in roots:
        m = [m for m in mounts.values() if m["mountPath"].rstrip("/") == r.strip().rstrip("/")]
        if check(len(m) == 1, f"root {r} is not a mounted volume"):
            check(m[0].get("readOnly") is True, f"root {r} is not mounted read-only")
            check("hostPath" in volumes[m[0]["name"]], f"root {r} is not a hostPath volume")

    # vmm needs no shared namespace; legacy needs the host's IPC and PID ones.
    ipc = ini.get("gpu", "ipc", fallback="vmm")
    shared = bool(spec.get("hostIPC")) and bool(spec.get("hostPID"))
    check(shared if ipc == "legacy" else not (spec.get("hostIPC") or spec.get("hostPID")),
          f"ipc = {ipc} with hostIPC={spec.get('hostIPC')} hostPID={spec.get('hostPID')}")
    return {"socket": sock, "socket_host_path": sock_vol.get("hostPath", {}).get("path"),
            "allow_gids": allow_gids, "namespace": ns}


def check_client(docs, daemon):
    for pod in docs:
        check(pod["kind"] == "Pod", f"example client: {pod['kind']} is not a Pod")
        spec = pod["spec"]
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        host = {n for n, v in vols.items() if v.get("hostPath", {}).get("path") == daemon["socket_host_path"]}
        check(len(host) == 1, f"example client: no hostPath volume of {daemon['socket_host_path']}")
        for v in host:
            check(vols[v]["hostPath"].get("type") == "Directory",
                  "example client: the socket directory must be type Directory (made by the daemon)")
        groups = [str(g) for g in spec.get("securityContext", {}).get("supplementalGroups", [])]
        check(any(g in daemon["allow_gids"] for g in groups),
              f"example client: supplementalGroups {groups} has none of allow_gids {daemon['allow_gids']}")
        gpus = 0
        for c in spec["containers"]:
            mounts = [m for m in c.get("volumeMounts", []) if m["name"] in host]
            sock = env_of(c).get("WCODECD_SOCKET")
            for m in mounts:
                check(m.get("readOnly") is True, f"example client {c['name']}: the socket directory is not read-only")
            if mounts and check(sock is not None, f"example client {c['name']}: no WCODECD_SOCKET"):
                check(os.path.dirname(sock) == mounts[0]["mountPath"].rstrip("/")
                      and os.path.basename(sock) == os.path.basename(daemon["socket"]),
                      f"example client {c['name']}: WCODECD_SOCKET {sock} is not the daemon's socket as mounted")
            gpus += int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
        check(gpus >= 1, "example client: requests no GPU from the device plugin")


def schema(files, moddir):
    """kubernetes-models' schemas, then tsc's excess-property check."""
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(moddir, "node_modules", "kubernetes-models")):
        print(f"node or {moddir}/node_modules missing (deploy/k8s/validate/install.sh installs them): skipped")
        sys.exit(77)
    here = os.path.dirname(os.path.abspath(__file__))
    validate = os.path.join(here, "..", "..", "deploy", "k8s", "validate", "validate.mjs")
    objs = [[os.path.basename(f), i, d] for f in files for i, d in enumerate(load(f))]
    with tempfile.TemporaryDirectory(dir=moddir) as tmp:
        # validate.mjs resolves kubernetes-models from where it sits: run a copy in moddir.
        shutil.copy(validate, os.path.join(tmp, "validate.mjs"))
        r = subprocess.run([node, os.path.join(tmp, "validate.mjs")], input=json.dumps(objs),
                           capture_output=True, text=True)
        print(r.stdout + r.stderr, end="")
        check(r.returncode == 0, "schema validation failed")
        types = sorted({(d["apiVersion"], d["kind"]) for _, _, d in objs})
        lines = [f'import type {{ I{k} as T{n} }} from "kubernetes-models/{a}/{k}";' for n, (a, k) in enumerate(types)]
        for n, (f, i, d) in enumerate(objs):
            t = types.index((d["apiVersion"], d["kind"]))
            lines.append(f"// {f}#{i}\nexport const o{n}: T{t} = {json.dumps(d, indent=1)};")
        with open(os.path.join(tmp, "strict.ts"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(tmp, "tsconfig.json"), "w") as f:
            json.dump({"compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext",
                                           "moduleResolution": "nodenext", "target": "es2022",
                                           "skipLibCheck": True}, "files": ["strict.ts"]}, f)
        tsc = os.path.join(moddir, "node_modules", "typescript", "bin", "tsc")
        r = subprocess.run([node, tsc, "-p", tmp], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if out:
            print(out)
        if check(r.returncode == 0, "tsc: an object has fields its Kubernetes type does not know"):
            print(f"tsc: {len(objs)} objects have only fields their types know")


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    k8s = args[0]
    files = sorted(os.path.join(k8s, f) for f in os.listdir(k8s) if f.endswith(".yaml"))
    if len(args) >= 2 and args[1] == "--schema":
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        default = os.environ.get("WCODEC_K8S_VALIDATE") or os.path.join(cache, "wcodec", "k8s-validate")
        schema(files, args[2] if len(args) == 3 else default)
    else:
        daemon = check_daemonset(load(os.path.join(k8s, "wcodecd-daemonset.yaml")))
        if daemon:
            check_client(load(os.path.join(k8s, "example-inference-pod.yaml")), daemon)
    for e in errors:
        print("FAIL:", e)
    if not errors:
        print(f"ok: {', '.join(os.path.basename(f) for f in files)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
