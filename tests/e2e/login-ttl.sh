#!/usr/bin/env bash
# A `docker login` outlives every token lifetime, as with Distribution and Harbor:
# berth runs with 2-second access tokens and a 1-second credential cache. docker asks
# for a refresh token at login (offline_token=true); berth's GET /token hands out none,
# so docker keeps the password, and podman can log in with the same auth file (it
# refuses one holding an identity token). Both still push and pull once the clock has
# passed every lifetime and the 30-second leeway of token checks, and docker's login
# ends at once when the account's password changes.
# e2e-timeout: 600
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require docker podman jq
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"

ADMIN_PW=admin-pw-ttl-1
ALICE_PW=alice-pw-ttl-1
ADMIN=admin:$ADMIN_PW
# Beyond the token lifetimes below plus the leeway (30 s) tokens are checked with.
PAST_TTLS=36

export BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD=$ADMIN_PW BERTH_AUTH__PROJECT_CREATION=admins \
	BERTH_AUTH__TOKEN_TTL_SECONDS=2 BERTH_AUTH__CREDENTIAL_CACHE_SECONDS=1 BERTH_AUTH__REFRESH_TTL_SECONDS=0
registry_start
containers_private_env

LOCAL=berth-e2e/login-ttl:$REG_PORT
MSG="hello from berth login-ttl e2e $REG_PORT"
on_exit "docker rmi -f $LOCAL \$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^$REG/')"
on_exit docker_logout_all
on_exit "podman rmi -af"

setup() {
	api_expect 201 "$ADMIN" POST /api/v1/users "{\"name\":\"alice\",\"password\":\"$ALICE_PW\",\"admin\":false}"
	api_expect 201 "$ADMIN" POST /api/v1/projects '{"name":"team","public":false}'
	api_expect 204 "$ADMIN" PUT /api/v1/projects/team/members/alice '{"role":"developer"}'
	docker_build_busybox "$LOCAL" "$MSG" >"$E2E_TMP/image-id"
}

logins() {
	printf '%s' "$ALICE_PW" | dockerc alice login -u alice --password-stdin "$REG" | tee "$E2E_TMP/login.out"
	grep -q 'Login Succeeded' "$E2E_TMP/login.out"
	# docker keeps the password (no identity token), so podman takes the same file.
	jq -e --arg r "$REG" '(.auths[$r].auth | length > 0) and (.auths[$r].identitytoken == null)' \
		"$E2E_TMP/docker-config/alice/config.json"
	printf '%s' "$ALICE_PW" | tmo podman login --tls-verify=false --authfile "$E2E_TMP/docker-config/alice/config.json" \
		-u alice --password-stdin "$REG"
	printf '%s' "$ALICE_PW" | tmo podman login --tls-verify=false -u alice --password-stdin "$REG"
	sleep "$PAST_TTLS"
}

docker_push_pull() {
	docker tag "$LOCAL" "$REG/team/app:late"
	dockerc alice push "$REG/team/app:late" | tee "$E2E_TMP/push.out"
	grep -q 'digest: sha256:' "$E2E_TMP/push.out"
	docker rmi "$REG/team/app:late"
	dockerc alice pull "$REG/team/app:late"
	expect_eq "docker run" "$MSG" "$(tmo docker run --rm --network none "$REG/team/app:late")"
}

podman_push_pull() {
	tmo podman pull --tls-verify=false "$REG/team/app:late"
	tmo podman tag "$REG/team/app:late" "$REG/team/app:podman-late"
	tmo podman push --tls-verify=false "$REG/team/app:podman-late"
	expect_eq "tags of team/app" "late podman-late" \
		"$(curl -fsS -u "alice:$ALICE_PW" "$REG_URL/v2/team/app/tags/list" | jq -r '.tags | sort | join(" ")')"
}

password_change_ends_the_login() {
	api_expect 200 "$ADMIN" PATCH /api/v1/users/alice '{"password":"alice-pw-ttl-2"}' >/dev/null
	sleep 2 # past the credential cache
	docker tag "$LOCAL" "$REG/team/app:after-reset"
	refute dockerc alice push "$REG/team/app:after-reset" >"$E2E_TMP/reset.out" 2>&1
	cat "$E2E_TMP/reset.out"
	grep -Eiq 'unauthori[sz]ed|denied|authentication required' "$E2E_TMP/reset.out"
}

step "accounts, project, image" setup
step "docker and podman log in as alice, then ${PAST_TTLS}s pass" logins
check "docker push and pull after every token lifetime passed" docker_push_pull
check "podman pull and push after every token lifetime passed" podman_push_pull
check "a password change ends docker's login at once" password_change_ends_the_login

e2e_finish
