#!/usr/bin/env bash
# Access control over HTTPS: berth with authentication on and its self-signed
# certificate (`serve --tls-self-signed`), and the clients told to trust it the way
# users do: docker through /etc/docker/certs.d/HOST:PORT/ca.crt, podman and skopeo
# with --cert-dir and TLS verification on, curl with --cacert. Login, push and pull
# with credentials; HSTS on the answers; the token realm is https; a client that
# does not trust the certificate is refused.
#
# Docker treats every 127.0.0.0/8 registry as insecure (it would fall back to
# skipping verification), so the "untrusted client is refused" checks use curl,
# podman and skopeo, which verify when told to.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require docker podman skopeo openssl
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"

ADMIN_PW=admin-pw-e2e-tls
ALICE_PW=alice-pw-e2e-tls
ADMIN=admin:$ADMIN_PW
export BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD=$ADMIN_PW
registry_start_tls
containers_private_env
TLSDIR=$REG_DATA/tls
DOCKER_CERTS=/etc/docker/certs.d/$REG

LOCAL=berth-e2e/auth-tls:$REG_PORT
MSG="hello from berth over TLS $REG_PORT"
on_exit "docker rmi -f $LOCAL \$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^$REG/')"
on_exit docker_logout_all
on_exit "podman rmi -af"

denied() {
	grep -Eiq 'denied|unauthori[sz]ed|forbidden|authentication required' "$1" || {
		echo "no refusal message in:"
		cat "$1"
		return 1
	}
}

# --- TLS as curl sees it ---------------------------------------------------------

certificate() {
	openssl x509 -in "$REG_CA" -noout -subject -ext subjectAltName | tee "$E2E_TMP/cert.txt"
	grep -q 'IP Address:127.0.0.1' "$E2E_TMP/cert.txt"
	grep -q 'DNS:localhost' "$E2E_TMP/cert.txt"
	[[ -f $TLSDIR/berth.crt ]]
}

https_challenge() {
	local code
	code=$(http_req GET /v2/ "$E2E_TMP/v2" --http1.1 --cacert "$REG_CA")
	cat "$E2E_TMP/v2.hdr"
	expect_eq "GET /v2/ over HTTPS" 401 "$code"
	expect_match "Strict-Transport-Security" '^max-age=[1-9][0-9]*' "$(hdr Strict-Transport-Security "$E2E_TMP/v2.hdr")"
	expect_eq "WWW-Authenticate (HTTP/1.1)" "Bearer realm=\"https://$REG/token\",service=\"berth\"" \
		"$(hdr WWW-Authenticate "$E2E_TMP/v2.hdr")"
	expect_eq "GET /v2/ as admin" 200 "$(http_req GET /v2/ "$E2E_TMP/v2" --cacert "$REG_CA" -u "$ADMIN")"
	expect_match "Strict-Transport-Security (authenticated)" '^max-age=' "$(hdr Strict-Transport-Security "$E2E_TMP/v2.hdr")"
}

# curl negotiates HTTP/2 over TLS (ALPN): the realm must still name the port.
https_challenge_h2() {
	local code
	code=$(http_req GET /v2/ "$E2E_TMP/v2" --http2 --cacert "$REG_CA")
	cat "$E2E_TMP/v2.hdr"
	expect_eq "GET /v2/ over HTTP/2" 401 "$code"
	grep -q '^HTTP/2 ' "$E2E_TMP/v2.hdr"
	expect_eq "WWW-Authenticate (HTTP/2)" "Bearer realm=\"https://$REG/token\",service=\"berth\"" \
		"$(hdr WWW-Authenticate "$E2E_TMP/v2.hdr")"
}

untrusted_refused() {
	local rc=0
	# -q: no .curlrc; nothing else makes curl trust the certificate.
	curl -q -sS --max-time 10 -o /dev/null "$REG_URL/v2/" 2>"$E2E_TMP/curl.err" || rc=$?
	cat "$E2E_TMP/curl.err"
	expect_eq "curl without --cacert: exit status (60: certificate not trusted)" 60 "$rc"
	rc=0
	curl -q -sS --max-time 10 -o /dev/null -u "$ADMIN" "$REG_URL/v2/" 2>/dev/null || rc=$?
	expect_eq "curl with credentials, without --cacert" 60 "$rc"
	# Plain HTTP on the TLS port gets no registry answer.
	local code
	code=$(curl -q -s --max-time 10 -o /dev/null -w '%{http_code}' "http://$REG/v2/" || true)
	echo "plain HTTP: $code"
	[[ $code != 200 && $code != 401 ]]
}

setup() {
	api_expect 201 "$ADMIN" POST /api/v1/users "{\"name\":\"alice\",\"password\":\"$ALICE_PW\",\"admin\":false}"
	api_expect 201 "$ADMIN" POST /api/v1/projects '{"name":"team","public":false}'
	api_expect 204 "$ADMIN" PUT /api/v1/projects/team/members/alice '{"role":"developer"}'
}

token_over_https() {
	local code
	code=$(http_req GET "/token?service=berth&scope=repository:team/app:pull,push" "$E2E_TMP/tok" \
		--cacert "$REG_CA" -u "alice:$ALICE_PW")
	expect_eq "GET /token as alice" 200 "$code"
	jq -e '.token | length > 20' "$E2E_TMP/tok"
	expect_eq "GET /v2/ with the token" 200 \
		"$(http_req GET /v2/ "$E2E_TMP/v2" --cacert "$REG_CA" -H "Authorization: Bearer $(jq -r .token "$E2E_TMP/tok")")"
}

# --- docker ----------------------------------------------------------------------

docker_trust() {
	mkdir -p "$DOCKER_CERTS"
	cp "$REG_CA" "$DOCKER_CERTS/ca.crt"
}

docker_login() {
	printf '%s' "$ALICE_PW" | dockerc alice login -u alice --password-stdin "$REG" | tee "$E2E_TMP/login.out"
	grep -q 'Login Succeeded' "$E2E_TMP/login.out"
}

build() {
	docker_build_busybox "$LOCAL" "$MSG" >"$E2E_TMP/image-id"
	docker tag "$LOCAL" "$REG/team/app:1"
}

docker_push() {
	dockerc alice push "$REG/team/app:1" | tee "$E2E_TMP/push.out"
	grep -q 'Pushed' "$E2E_TMP/push.out"
	grep -o 'digest: sha256:[0-9a-f]\{64\}' "$E2E_TMP/push.out" | cut -d' ' -f2 >"$E2E_TMP/digest"
	[[ -s $E2E_TMP/digest ]]
	as_user alice "$ALICE_PW" verify_tree team/app 1
}

docker_pull_run() {
	docker rmi "$REG/team/app:1"
	dockerc alice pull "$REG/team/app:1" | tee "$E2E_TMP/pull.out"
	grep -q "Digest: $(cat "$E2E_TMP/digest")" "$E2E_TMP/pull.out"
	expect_eq "pulled image ID" "$(cat "$E2E_TMP/image-id")" "$(docker image inspect -f '{{.Id}}' "$REG/team/app:1")"
	expect_eq "docker run" "$MSG" "$(tmo docker run --rm --network none "$REG/team/app:1")"
}

docker_anonymous_refused() {
	refute dockerc anonymous pull "$REG/team/app:1" >"$E2E_TMP/anon.out" 2>&1
	cat "$E2E_TMP/anon.out"
	denied "$E2E_TMP/anon.out"
}

# --- podman and skopeo, verifying the certificate ---------------------------------

V=(--tls-verify=true --cert-dir "$TLSDIR")

podman_flow() {
	printf '%s' "$ALICE_PW" | tmo podman login "${V[@]}" -u alice --password-stdin "$REG"
	tmo podman pull "${V[@]}" "$REG/team/app:1"
	tmo podman tag "$REG/team/app:1" "$REG/team/app:podman"
	tmo podman push "${V[@]}" "$REG/team/app:podman"
	tmo podman rmi -af
	tmo podman pull "${V[@]}" "$REG/team/app:podman"
	expect_eq "image pulled back by podman" "$(cat "$E2E_TMP/image-id")" \
		"sha256:$(tmo podman image inspect -f '{{.Id}}' "$REG/team/app:podman")"
	as_user alice "$ALICE_PW" verify_tree team/app podman
	tmo podman logout "$REG"
}

# containers/image also trusts /etc/docker/certs.d/HOST:PORT (where docker's copy of
# the CA is), and --cert-dir replaces those directories: an empty one trusts nothing.
NO_CA=(--tls-verify=true --cert-dir "$E2E_TMP/no-ca")
mkdir -p "$E2E_TMP/no-ca"

podman_untrusted() {
	refute tmo podman login "${NO_CA[@]}" -u alice -p "$ALICE_PW" "$REG" >"$E2E_TMP/podman-untrusted.out" 2>&1
	cat "$E2E_TMP/podman-untrusted.out"
	grep -Eiq 'x509|certificate' "$E2E_TMP/podman-untrusted.out"
}

skopeo_flow() {
	local L=$E2E_TMP/layout d
	oci_add_image "$L" 1 amd64 "hello skopeo over TLS" >"$E2E_TMP/sk.digest"
	d=$(cat "$E2E_TMP/sk.digest")
	tmo skopeo copy --dest-tls-verify=true --dest-cert-dir "$TLSDIR" --dest-creds "alice:$ALICE_PW" \
		"oci:$L:1" "docker://$REG/team/skopeo:1"
	tmo skopeo inspect "${V[@]}" --creds "alice:$ALICE_PW" "docker://$REG/team/skopeo:1" >"$E2E_TMP/sk.json"
	expect_eq "skopeo inspect .Digest" "$d" "$(jq -r .Digest "$E2E_TMP/sk.json")"
	tmo skopeo copy --src-tls-verify=true --src-cert-dir "$TLSDIR" --src-creds "alice:$ALICE_PW" \
		"docker://$REG/team/skopeo:1" "dir:$E2E_TMP/sk-dir"
	expect_eq "manifest copied back" "$d" "$(sha_of "$E2E_TMP/sk-dir/manifest.json")"
	as_user alice "$ALICE_PW" verify_tree team/skopeo 1
	refute tmo skopeo inspect "${V[@]}" --no-creds "docker://$REG/team/skopeo:1" >"$E2E_TMP/sk-anon.out" 2>&1
	cat "$E2E_TMP/sk-anon.out"
	denied "$E2E_TMP/sk-anon.out"
}

skopeo_untrusted() {
	refute tmo skopeo inspect "${NO_CA[@]}" --creds "alice:$ALICE_PW" "docker://$REG/team/skopeo:1" \
		>"$E2E_TMP/sk-untrusted.out" 2>&1
	cat "$E2E_TMP/sk-untrusted.out"
	grep -Eiq 'x509|certificate' "$E2E_TMP/sk-untrusted.out"
}

step "the self-signed certificate names 127.0.0.1 and localhost" certificate
check "curl --cacert: 401 challenge with an https realm, HSTS" https_challenge
check "HTTP/2: the challenge's realm keeps the port" https_challenge_h2
check "a client without the CA is refused" untrusted_refused
step "management API over HTTPS: alice, team" setup
check "token service over HTTPS" token_over_https
on_exit "rm -rf '$DOCKER_CERTS'"
step "docker trusts the CA (/etc/docker/certs.d)" docker_trust
step "docker login as alice over HTTPS" docker_login
step "docker build a FROM-scratch busybox image" build
step "docker push $REG/team/app:1 over HTTPS" docker_push
check "docker rmi, pull and run over HTTPS" docker_pull_run
check "docker anonymous pull refused over HTTPS" docker_anonymous_refused
check "podman login, pull, push, pull back with --cert-dir, verification on" podman_flow
check "podman without the CA is refused (x509)" podman_untrusted
check "skopeo copy/inspect with creds, --cert-dir, verification on" skopeo_flow
check "skopeo without the CA is refused (x509)" skopeo_untrusted

e2e_finish
