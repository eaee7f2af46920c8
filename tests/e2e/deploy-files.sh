#!/usr/bin/env bash
# The operators' packaging in deploy/, checked as far as this machine can without a
# cluster or a registry to pull from (deploy.sh builds and runs the image itself):
# the compose stack parses with `docker compose config` (or docker-compose), refuses
# to start without its secrets, and wires berth to PostgreSQL, Garage (in the region
# garage.toml serves) and nginx (whose configuration nginx -t accepts and which
# streams bodies of any size); the systemd unit passes `systemd-analyze verify`
# without a warning and its hardening rates an exposure of at most 2.0 in
# `systemd-analyze security`; the Helm chart lints (chart-lint.py; and where helm
# exists, which scripts/install-deps provides, `helm lint` and `helm template` in both
# modes) and berth accepts its berth.toml.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
require python3
DEPLOY=$E2E_ROOT/deploy
# Made-up secrets of the documented shapes (compose has no defaults for them).
COMPOSE_ENV=(BERTH_ADMIN_PASSWORD=e2e-admin POSTGRES_PASSWORD=e2e-pg
	S3_ACCESS_KEY_ID=GK0123456789abcdef01234567 GARAGE_RPC_SECRET="$(printf 'ab%062d' 0)"
	S3_SECRET_ACCESS_KEY="$(printf 'cd%062d' 1)")

# The compose plugin where it exists, else the standalone docker-compose (v1).
COMPOSE=()
if docker compose version >/dev/null 2>&1; then
	COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
	COMPOSE=(docker-compose)
fi

compose_parses() {
	env "${COMPOSE_ENV[@]}" "${COMPOSE[@]}" -f "$DEPLOY/compose.yaml" config -q
	env "${COMPOSE_ENV[@]}" "${COMPOSE[@]}" -f "$DEPLOY/compose.yaml" config >"$E2E_TMP/compose.out"
}

compose_needs_secrets() {
	refute env -u BERTH_ADMIN_PASSWORD -u POSTGRES_PASSWORD -u S3_ACCESS_KEY_ID -u S3_SECRET_ACCESS_KEY \
		-u GARAGE_RPC_SECRET "${COMPOSE[@]}" -f "$DEPLOY/compose.yaml" config -q 2>"$E2E_TMP/nosecret.err"
	cat "$E2E_TMP/nosecret.err"
	grep -q 'set [A-Z_]*PASSWORD\|set S3_\|set GARAGE_' "$E2E_TMP/nosecret.err"
}

# The effective stack: who talks to whom, with which settings.
compose_wiring() {
	python3 - "$E2E_TMP/compose.out" "$DEPLOY/compose/garage.toml" <<-'PY'
		import sys, tomllib, yaml
		stack = yaml.safe_load(open(sys.argv[1]))
		garage = tomllib.load(open(sys.argv[2], "rb"))
		services = stack["services"]
		want = {"berth-1", "berth-2", "nginx", "postgres", "garage"}
		assert set(services) == want, f"services {sorted(services)} != {sorted(want)}"
		for name in ("berth-1", "berth-2"):
		    env = services[name]["environment"]
		    assert env["BERTH_METADATA__URL"].startswith("postgres://berth:e2e-pg@postgres:5432/"), env["BERTH_METADATA__URL"]
		    assert env["BERTH_STORAGE__KIND"] == "s3"
		    assert env["BERTH_STORAGE__S3__ENDPOINT"] == "http://garage:3900"
		    region = garage["s3_api"]["s3_region"]
		    assert env["BERTH_STORAGE__S3__REGION"] == region, f"region {env['BERTH_STORAGE__S3__REGION']} != garage's {region}"
		    assert env["BERTH_STORAGE__S3__ACCESS_KEY_ID"] == services["garage"]["environment"]["GARAGE_DEFAULT_ACCESS_KEY"]
		    assert env["BERTH_STORAGE__S3__BUCKET"] == services["garage"]["environment"]["GARAGE_DEFAULT_BUCKET"]
		    assert "ports" not in services[name], f"{name} must be reached through nginx only"
		ports = services["nginx"]["ports"]
		print("nginx ports:", ports)
		assert any("127.0.0.1" in str(p) for p in ports), "nginx must publish on loopback only"
		print("ok:", sorted(services))
	PY
}

# The compose replicas' BERTH_* variables, read by the real berth: every one must
# name a setting (berth warns about and ignores any other) and pass its checks.
compose_env_known() {
	local -a vars
	mapfile -t vars < <(python3 -c '
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))["services"]["berth-1"]["environment"]
for k, v in env.items():
    print(f"{k}={v}")' "$E2E_TMP/compose.out")
	env -i PATH="$PATH" "${vars[@]}" BERTH_DATA_DIR="$E2E_TMP/compose-data" \
		"$BERTH_BIN" config print >"$E2E_TMP/compose-config.out" 2>"$E2E_TMP/compose-config.err"
	cat "$E2E_TMP/compose-config.err"
	[[ ! -s $E2E_TMP/compose-config.err ]]
	grep -q '^kind = "s3"' "$E2E_TMP/compose-config.out"
}

nginx_conf() {
	local conf=$DEPLOY/compose/nginx.conf d
	for d in 'client_max_body_size 0;' 'proxy_request_buffering off;' 'proxy_buffering off;' \
		'proxy_http_version 1.1;' 'proxy_set_header Host $http_host;'; do
		grep -qF "$d" "$conf" || {
			echo "nginx.conf lacks: $d"
			return 1
		}
	done
	if ! command -v nginx >/dev/null 2>&1; then
		echo "no nginx here: syntax not checked"
		return 0
	fi
	# The replicas' names resolve only inside the compose network.
	mkdir -p "$E2E_TMP/nginx"
	sed 's/server berth-[0-9]*:/server 127.0.0.1:/' "$conf" >"$E2E_TMP/nginx/berth.conf"
	cat >"$E2E_TMP/nginx/nginx.conf" <<-EOF
		pid $E2E_TMP/nginx/nginx.pid;
		error_log $E2E_TMP/nginx/error.log;
		events {}
		http { include $E2E_TMP/nginx/berth.conf; }
	EOF
	nginx -t -p "$E2E_TMP/nginx" -e "$E2E_TMP/nginx/error.log" -c "$E2E_TMP/nginx/nginx.conf"
}

systemd_verify() {
	local unit=$E2E_TMP/sd/berth.service
	mkdir -p "$E2E_TMP/sd"
	# verify insists that ExecStart's binary exists.
	sed "s#/usr/local/bin/berth#$(command -v true)#" "$DEPLOY/berth.service" >"$unit"
	systemd-analyze verify "$unit" 2>&1 | tee "$E2E_TMP/sd/verify.out"
	# An unknown or misspelt key is only a warning: it must not happen either.
	[[ ! -s $E2E_TMP/sd/verify.out ]]
	systemd-analyze security --offline=yes --threshold=20 "$unit" | tail -n 1
}

chart_lint() {
	python3 "$E2E_ROOT/tests/e2e/chart-lint.py" "$DEPLOY/helm/berth" "$E2E_ROOT/Cargo.toml"
}

# The chart's berth.toml, read by the real berth (unknown keys are errors there).
chart_config_accepted() {
	python3 -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["config"], end="")' \
		"$DEPLOY/helm/berth/values.yaml" >"$E2E_TMP/chart-berth.toml"
	env -i PATH="$PATH" "$BERTH_BIN" config print --config "$E2E_TMP/chart-berth.toml" >"$E2E_TMP/chart-config.out"
	grep -q '^json = true' "$E2E_TMP/chart-config.out"
}

helm_template() {
	local chart=$DEPLOY/helm/berth out=$E2E_TMP/helm
	mkdir -p "$out"
	# helm's own caches and settings stay in the temp dir.
	export HELM_CACHE_HOME=$out/cache HELM_CONFIG_HOME=$out/config HELM_DATA_HOME=$out/data
	helm lint --strict "$chart"
	helm template t "$chart" --set replicaCount=5 >"$out/embedded.yaml"
	grep -q 'kind: PersistentVolumeClaim' "$out/embedded.yaml"
	grep -q '^  replicas: 1$' "$out/embedded.yaml"
	grep -q 'type: Recreate' "$out/embedded.yaml"
	helm template t "$chart" --set mode=scaleout --set replicaCount=3 \
		--set scaleout.s3.endpoint=http://garage:3900 --set scaleout.s3.allowHttp=true --set scaleout.s3.bucket=berth \
		--set secrets.metadataUrl=postgres://u:p@db:5432/berth \
		--set secrets.s3AccessKeyId=k --set secrets.s3SecretAccessKey=s >"$out/scaleout.yaml"
	refute grep -q 'kind: PersistentVolumeClaim' "$out/scaleout.yaml"
	grep -q '^  replicas: 3$' "$out/scaleout.yaml"
	grep -A1 'name: BERTH_STORAGE__KIND' "$out/scaleout.yaml" | grep -q 'value: s3'
	grep -q 'key: metadata-url' "$out/scaleout.yaml"
	# What a scale-out release cannot work without, and a mistyped mode, are refused.
	refute helm template t "$chart" --set mode=scaleout
	refute helm template t "$chart" --set mode=scale-out
	helm template t "$chart" --set secrets.existingSecret=mine >"$out/existing.yaml"
	refute grep -q 'kind: Secret' "$out/existing.yaml"
	grep -q 'name: mine' "$out/existing.yaml"
}

# The scale-out Deployment's environment (values, and the chart's Secret for the
# secretKeyRefs) read by the real berth, as compose_env_known does.
chart_env_known() {
	local -a vars
	mapfile -t vars < <(python3 -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
secret = next(d for d in docs if d["kind"] == "Secret")["stringData"]
deploy = next(d for d in docs if d["kind"] == "Deployment")
for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]:
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    print("%s=%s" % (e["name"], secret[ref["key"]] if ref else e["value"]))' "$E2E_TMP/helm/scaleout.yaml")
	printf '%s\n' "${vars[@]%%=*}"
	# BERTH_CONFIG names the ConfigMap's file, which exists only in the pod.
	env -i PATH="$PATH" "${vars[@]}" BERTH_CONFIG="$E2E_TMP/chart-berth.toml" BERTH_DATA_DIR="$E2E_TMP/chart-data" \
		"$BERTH_BIN" config print >"$E2E_TMP/chart-env.out" 2>"$E2E_TMP/chart-env.err"
	cat "$E2E_TMP/chart-env.err"
	[[ ! -s $E2E_TMP/chart-env.err ]]
	grep -q '^kind = "s3"' "$E2E_TMP/chart-env.out"
}

if ((${#COMPOSE[@]} > 0)); then
	check "compose.yaml parses (docker compose config)" compose_parses
	check "compose.yaml refuses to start without its secrets" compose_needs_secrets
	check "compose stack: berth x2 -> PostgreSQL, Garage (same region, key, bucket), behind nginx" compose_wiring
	# Only a berth with the scale-out settings (storage, metadata) can judge them.
	if [[ -x $BERTH_BIN ]] && env -i PATH="$PATH" "$BERTH_BIN" config print 2>/dev/null | grep -q '^\[storage'; then
		check "compose stack: every BERTH_* variable is a berth setting (berth config print)" compose_env_known
	else
		skip "compose stack's BERTH_* names: this berth ($BERTH_BIN) has no [storage] settings"
	fi
else
	skip "compose.yaml: neither docker compose nor docker-compose here"
fi
check "nginx.conf: streams bodies of any size; nginx -t accepts it" nginx_conf
if command -v systemd-analyze >/dev/null 2>&1; then
	check "berth.service: systemd-analyze verify, no warning; exposure <= 2.0" systemd_verify
else
	skip "berth.service: no systemd-analyze here"
fi
check "Helm chart lints (Chart, values, templates as YAML, .Values references)" chart_lint
if [[ -x $BERTH_BIN ]]; then
	check "the chart's berth.toml passes berth config print" chart_config_accepted
else
	skip "the chart's berth.toml: no berth binary at $BERTH_BIN"
fi
if command -v helm >/dev/null 2>&1; then
	check "helm lint --strict; helm template: embedded (1 replica, PVC), scaleout, refusals, existing Secret" helm_template
	if [[ -x $BERTH_BIN ]] && env -i PATH="$PATH" "$BERTH_BIN" config print 2>/dev/null | grep -q '^\[storage'; then
		check "the scale-out Deployment's BERTH_* variables are berth settings" chart_env_known
	else
		skip "the chart's BERTH_* names: this berth ($BERTH_BIN) has no [storage] settings"
	fi
else
	skip "helm lint / helm template: no helm here"
fi

e2e_finish
