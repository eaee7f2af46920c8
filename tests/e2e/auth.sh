#!/usr/bin/env bash
# Access control with real clients, over plain HTTP on 127.0.0.1: berth with
# authentication on (BERTH_AUTH__MODE=token), accounts, projects, roles and a robot
# made through the management API, then docker (token flow), podman and skopeo log
# in, push and pull as those accounts; what a role may not do is refused; anonymous
# pulls work only from a public project; a personal access token and htpasswd
# accounts (bcrypt, apr1, SHA) log in; failed logins get rate-limited (429,
# Retry-After); the audit log names who logged in, pushed and pulled what, from where.
#
# Each docker account has its own client configuration (lib.sh dockerc), podman and
# skopeo their own credentials file, so nothing touches ~/.docker or the machine's
# image store beyond the test's own, removed, tags.
#
# Failed logins are limited per account and per source address (3 here): the bad
# attempts come from other loopback addresses (127.0.0.2, .3, …) so that 127.0.0.1,
# where docker and podman connect from, never reaches the limit.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require docker podman skopeo htpasswd
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"

ADMIN_PW=admin-pw-e2e-1
ALICE_PW=alice-pw-e2e-1
BOB_PW=bob-pw-e2e-1
CAROL_PW=carol-pw-e2e-1
ERIN_PW=erin-pw-e2e-1
HT_PW=htpasswd-pw-1
ROBOT="robot\$team+ci"
ADMIN=admin:$ADMIN_PW

# htpasswd accounts in the three formats Debian's apache2-utils writes.
HTPASSWD=$E2E_TMP/htpasswd
{
	htpasswd -nbB ht-bcrypt "$HT_PW"
	htpasswd -nbm ht-apr1 "$HT_PW"
	htpasswd -nbs ht-sha "$HT_PW"
} | sed '/^$/d' >"$HTPASSWD"

export BERTH_AUTH__MODE=token BERTH_ADMIN_PASSWORD=$ADMIN_PW BERTH_AUTH__HTPASSWD_FILE=$HTPASSWD \
	BERTH_AUTH__LOGIN_MAX_FAILURES=3 BERTH_AUTH__PROJECT_CREATION=admins
registry_start
containers_private_env

LOCAL=berth-e2e/auth:$REG_PORT
MSG="hello from berth auth e2e $REG_PORT"
on_exit "docker rmi -f $LOCAL \$(docker images --format '{{.Repository}}:{{.Tag}}' | grep '^$REG/')"
on_exit docker_logout_all
on_exit "podman rmi -af"

# login NAME USER SECRET [ARGS...]: docker login in configuration NAME.
login() {
	local name=$1 user=$2 secret=$3
	shift 3
	printf '%s' "$secret" | dockerc "$name" login "$@" -u "$user" --password-stdin "$REG"
}

# denied OUTPUT_FILE: a client's output says the registry refused access.
denied() {
	grep -Eiq 'denied|unauthori[sz]ed|forbidden|authentication required|not allowed' "$1" || {
		echo "no refusal message in:"
		cat "$1"
		return 1
	}
}

# jwt_claims TOKEN: the JSON payload of a JWT.
jwt_claims() {
	local p
	p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
	while ((${#p} % 4)); do p+='='; done
	base64 -d <<<"$p"
}

# --- setup -----------------------------------------------------------------------

anonymous_challenge() {
	local code
	code=$(http_req GET /v2/ "$E2E_TMP/v2")
	expect_eq "anonymous GET /v2/" 401 "$code"
	expect_eq "WWW-Authenticate" "Bearer realm=\"$REG_URL/token\",service=\"berth\"" \
		"$(hdr WWW-Authenticate "$E2E_TMP/v2.hdr")"
	expect_eq "Strict-Transport-Security over plain HTTP" "" "$(hdr Strict-Transport-Security "$E2E_TMP/v2.hdr")"
	expect_eq "GET /v2/ as admin (Basic)" 200 "$(http_req GET /v2/ "$E2E_TMP/v2" -u "admin:$ADMIN_PW")"
}

setup() {
	local u
	for u in alice:$ALICE_PW bob:$BOB_PW carol:$CAROL_PW erin:$ERIN_PW; do
		api_expect 201 "$ADMIN" POST /api/v1/users "{\"name\":\"${u%%:*}\",\"password\":\"${u#*:}\",\"admin\":false}"
	done
	api_expect 201 "$ADMIN" POST /api/v1/projects '{"name":"team","public":false}'
	api_expect 201 "$ADMIN" POST /api/v1/projects '{"name":"other","public":false}'
	api_expect 201 "$ADMIN" POST /api/v1/projects '{"name":"pub","public":true}'
	api_expect 204 "$ADMIN" PUT /api/v1/projects/team/members/alice '{"role":"developer"}'
	api_expect 204 "$ADMIN" PUT /api/v1/projects/team/members/bob '{"role":"guest"}'
	api_expect 204 "$ADMIN" PUT /api/v1/projects/other/members/carol '{"role":"developer"}'
	api_expect 201 "$ADMIN" POST /api/v1/projects/team/robots '{"name":"ci","actions":["pull","push"]}' >"$E2E_TMP/robot.json"
	expect_eq "robot name" "$ROBOT" "$(jq -r .name "$E2E_TMP/robot.json")"
	jq -r .secret "$E2E_TMP/robot.json" >"$E2E_TMP/robot.secret"
	[[ -s $E2E_TMP/robot.secret ]]
	api_expect 200 "$ADMIN" GET /api/v1/projects/team/members | tee "$E2E_TMP/members.json"
	expect_eq "members of team" "alice=developer bob=guest" \
		"$(jq -r '[.[] | select(.user != "admin") | "\(.user)=\(.role)"] | sort | join(" ")' "$E2E_TMP/members.json")"
}

# --- docker as a developer (token flow) ------------------------------------------

alice_login() {
	login alice alice "$ALICE_PW" | tee "$E2E_TMP/login.out"
	grep -q 'Login Succeeded' "$E2E_TMP/login.out"
	jq -e --arg r "$REG" '.auths[$r].auth' "$E2E_TMP/docker-config/alice/config.json" >/dev/null
}

build() {
	docker_build_busybox "$LOCAL" "$MSG" >"$E2E_TMP/image-id"
	docker tag "$LOCAL" "$REG/team/app:1"
}

alice_push() {
	dockerc alice push "$REG/team/app:1" | tee "$E2E_TMP/push.out"
	grep -q 'Pushed' "$E2E_TMP/push.out"
	grep -o 'digest: sha256:[0-9a-f]\{64\}' "$E2E_TMP/push.out" | cut -d' ' -f2 >"$E2E_TMP/digest"
	[[ -s $E2E_TMP/digest ]]
	# docker went through the token service for a push scope on team/app.
	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=token&actor=alice' | tee "$E2E_TMP/tokens-alice.json"
	jq -e 'any(.[]; (.detail // "") | test("repository:team/app:[a-z,]*push"))' "$E2E_TMP/tokens-alice.json"
}

alice_view() {
	as_user alice "$ALICE_PW" verify_tree team/app 1
	expect_eq "tags of team/app" 1 "$(as_user alice "$ALICE_PW" tags_of team/app)"
}

alice_pull_run() {
	docker rmi "$REG/team/app:1"
	refute docker image inspect "$REG/team/app:1" >/dev/null 2>&1
	dockerc alice pull "$REG/team/app:1" | tee "$E2E_TMP/pull.out"
	grep -q "Digest: $(cat "$E2E_TMP/digest")" "$E2E_TMP/pull.out"
	expect_eq "pulled image ID" "$(cat "$E2E_TMP/image-id")" "$(docker image inspect -f '{{.Id}}' "$REG/team/app:1")"
	expect_eq "docker run" "$MSG" "$(tmo docker run --rm --network none "$REG/team/app:1")"
}

# The token service hands out what each account may do, and /v2 honours exactly that.
token_scopes() {
	local q="service=berth&scope=repository:team/app:pull,push" t code
	code=$(http_req GET "/token?$q" "$E2E_TMP/tok" -u "alice:$ALICE_PW")
	expect_eq "GET /token as alice" 200 "$code"
	t=$(jq -r .token "$E2E_TMP/tok")
	jwt_claims "$t" | tee "$E2E_TMP/claims"
	expect_eq "alice's token: sub" alice "$(jq -r .sub "$E2E_TMP/claims")"
	expect_eq "alice's token: access" "pull,push" \
		"$(jq -r '.access[] | select(.name == "team/app") | .actions | sort | join(",")' "$E2E_TMP/claims")"
	expect_eq "manifest with alice's token" 200 \
		"$(http_req GET /v2/team/app/manifests/1 "$E2E_TMP/m" -H "Accept: $MT_DOCKER_MANIFEST" -H "Authorization: Bearer $t")"

	code=$(http_req GET "/token?$q" "$E2E_TMP/tok" -u "bob:$BOB_PW")
	expect_eq "GET /token as bob" 200 "$code"
	t=$(jq -r .token "$E2E_TMP/tok")
	jwt_claims "$t" >"$E2E_TMP/claims"
	expect_eq "bob's (guest) token: access" "pull" \
		"$(jq -r '[.access[] | select(.name == "team/app") | .actions[]] | sort | join(",")' "$E2E_TMP/claims")"
	code=$(http_req POST /v2/team/app/blobs/uploads/ "$E2E_TMP/up" -H "Authorization: Bearer $t" --data-binary '')
	expect_eq "upload with bob's token" 401 "$code"
	expect_match "challenge for the missing scope" 'scope="repository:team/app:push".*error="insufficient_scope"' \
		"$(hdr WWW-Authenticate "$E2E_TMP/up.hdr")"

	code=$(http_req GET "/token?$q" "$E2E_TMP/tok")
	expect_eq "GET /token anonymously" 200 "$code"
	t=$(jq -r .token "$E2E_TMP/tok")
	jwt_claims "$t" >"$E2E_TMP/claims"
	expect_eq "anonymous token: actions on team/app" "" \
		"$(jq -r '[(.access // [])[] | select(.name == "team/app") | .actions[]] | join(",")' "$E2E_TMP/claims")"
	expect_eq "manifest with the anonymous token" 401 \
		"$(http_req GET /v2/team/app/manifests/1 "$E2E_TMP/m" -H "Authorization: Bearer $t")"
	expect_eq "manifest with a forged token" 401 \
		"$(http_req GET /v2/team/app/manifests/1 "$E2E_TMP/m" -H "Authorization: Bearer ${t%.*}.AAAA")"
}

# --- podman and skopeo ---------------------------------------------------------

podman_flow() {
	printf '%s' "$ALICE_PW" | tmo podman login --tls-verify=false -u alice --password-stdin "$REG"
	tmo podman pull --tls-verify=false "$REG/team/app:1"
	tmo podman tag "$REG/team/app:1" "$REG/team/app:podman"
	tmo podman push --tls-verify=false "$REG/team/app:podman"
	tmo podman rmi -af
	tmo podman pull --tls-verify=false "$REG/team/app:podman"
	expect_eq "image pulled back by podman" "$(cat "$E2E_TMP/image-id")" \
		"sha256:$(tmo podman image inspect -f '{{.Id}}' "$REG/team/app:podman")"
	as_user alice "$ALICE_PW" verify_tree team/app podman
	tmo podman logout "$REG"
	refute tmo podman pull --tls-verify=false "$REG/team/app:1" >"$E2E_TMP/podman-anon.out" 2>&1
	cat "$E2E_TMP/podman-anon.out"
	denied "$E2E_TMP/podman-anon.out"
}

skopeo_flow() {
	local L=$E2E_TMP/layout d
	oci_add_image "$L" 1 amd64 "hello skopeo auth" >"$E2E_TMP/sk.digest"
	d=$(cat "$E2E_TMP/sk.digest")
	tmo skopeo copy --dest-tls-verify=false --dest-creds "alice:$ALICE_PW" "oci:$L:1" "docker://$REG/team/skopeo:1"
	tmo skopeo inspect --tls-verify=false --creds "alice:$ALICE_PW" "docker://$REG/team/skopeo:1" >"$E2E_TMP/sk.json"
	expect_eq "skopeo inspect .Digest" "$d" "$(jq -r .Digest "$E2E_TMP/sk.json")"
	tmo skopeo copy --src-tls-verify=false --src-creds "alice:$ALICE_PW" "docker://$REG/team/skopeo:1" "dir:$E2E_TMP/sk-dir"
	expect_eq "manifest copied back" "$d" "$(sha_of "$E2E_TMP/sk-dir/manifest.json")"
	refute tmo skopeo inspect --tls-verify=false --no-creds "docker://$REG/team/skopeo:1" >"$E2E_TMP/sk-anon.out" 2>&1
	cat "$E2E_TMP/sk-anon.out"
	denied "$E2E_TMP/sk-anon.out"
}

# --- robot account ---------------------------------------------------------------

robot_flow() {
	login robot "$ROBOT" "$(cat "$E2E_TMP/robot.secret")" | tee "$E2E_TMP/robot-login.out"
	grep -q 'Login Succeeded' "$E2E_TMP/robot-login.out"
	docker tag "$LOCAL" "$REG/team/robot:1"
	dockerc robot push "$REG/team/robot:1"
	docker rmi "$REG/team/robot:1"
	dockerc robot pull "$REG/team/robot:1"
	dockerc robot pull "$REG/team/app:1"
	expect_eq "docker run (robot's pull)" "$MSG" "$(tmo docker run --rm --network none "$REG/team/robot:1")"
}

robot_refused_outside() {
	docker tag "$LOCAL" "$REG/other/robot:1"
	refute dockerc robot push "$REG/other/robot:1" >"$E2E_TMP/robot-push.out" 2>&1
	cat "$E2E_TMP/robot-push.out"
	denied "$E2E_TMP/robot-push.out"
	refute dockerc robot pull "$REG/other/app:1" >"$E2E_TMP/robot-pull.out" 2>&1
	cat "$E2E_TMP/robot-pull.out"
	denied "$E2E_TMP/robot-pull.out"
	expect_eq "robot's Basic GET of a manifest in other/" 403 \
		"$(http_req GET /v2/other/app/manifests/1 "$E2E_TMP/m" -u "$ROBOT:$(cat "$E2E_TMP/robot.secret")")"
}

# --- other projects and roles ----------------------------------------------------

carol_own_project() {
	login carol carol "$CAROL_PW"
	docker tag "$LOCAL" "$REG/other/app:1"
	dockerc carol push "$REG/other/app:1"
	as_user carol "$CAROL_PW" verify_tree other/app 1
}

carol_refused_in_team() {
	docker tag "$LOCAL" "$REG/team/x:1"
	refute dockerc carol push "$REG/team/x:1" >"$E2E_TMP/carol.out" 2>&1
	cat "$E2E_TMP/carol.out"
	denied "$E2E_TMP/carol.out"
	refute dockerc carol pull "$REG/team/app:1" >"$E2E_TMP/carol-pull.out" 2>&1
	denied "$E2E_TMP/carol-pull.out"
	# Nothing landed: team/x does not exist.
	expect_eq "GET /v2/team/x/tags/list as admin" 404 \
		"$(http_req GET /v2/team/x/tags/list "$E2E_TMP/t" -u "admin:$ADMIN_PW")"
}

bob_guest() {
	login bob bob "$BOB_PW"
	docker rmi "$REG/team/app:1"
	dockerc bob pull "$REG/team/app:1"
	expect_eq "docker run (bob's pull)" "$MSG" "$(tmo docker run --rm --network none "$REG/team/app:1")"
	# docker re-pulls a manifest it already has with a HEAD only; skopeo GETs it (the
	# audit log records a GET as a pull).
	tmo skopeo inspect --tls-verify=false --creds "bob:$BOB_PW" "docker://$REG/team/app:1" >"$E2E_TMP/bob-inspect.json"
	expect_eq "skopeo inspect as bob: .Digest" "$(cat "$E2E_TMP/digest")" "$(jq -r .Digest "$E2E_TMP/bob-inspect.json")"
	docker tag "$LOCAL" "$REG/team/app:bob"
	refute dockerc bob push "$REG/team/app:bob" >"$E2E_TMP/bob.out" 2>&1
	cat "$E2E_TMP/bob.out"
	denied "$E2E_TMP/bob.out"
	as_user bob "$BOB_PW" tags_of team/app >"$E2E_TMP/bob-tags"
	grep -qx 1 "$E2E_TMP/bob-tags"
	refute grep -qx bob "$E2E_TMP/bob-tags"
}

# --- anonymous access ------------------------------------------------------------

public_pull() {
	login admin admin "$ADMIN_PW"
	docker tag "$LOCAL" "$REG/pub/hello:1"
	dockerc admin push "$REG/pub/hello:1"
	dockerc admin logout "$REG"
	refute jq -e --arg r "$REG" '.auths[$r]' "$E2E_TMP/docker-config/admin/config.json"
	docker rmi "$REG/pub/hello:1"
	dockerc admin pull "$REG/pub/hello:1"
	expect_eq "docker run (anonymous pull)" "$MSG" "$(tmo docker run --rm --network none "$REG/pub/hello:1")"
	as_anonymous verify_tree pub/hello 1
}

anonymous_refused() {
	refute dockerc anonymous pull "$REG/team/app:1" >"$E2E_TMP/anon.out" 2>&1
	cat "$E2E_TMP/anon.out"
	denied "$E2E_TMP/anon.out"
	expect_eq "anonymous GET of a team manifest" 401 "$(http_req GET /v2/team/app/manifests/1 "$E2E_TMP/m")"
	refute dockerc anonymous push "$REG/pub/hello:1" >"$E2E_TMP/anon-push.out" 2>&1
	denied "$E2E_TMP/anon-push.out"
}

# --- other credentials -----------------------------------------------------------

personal_access_token() {
	api_expect 201 "alice:$ALICE_PW" POST /api/v1/tokens '{"name":"e2e laptop"}' >"$E2E_TMP/pat.json"
	jq -r .secret "$E2E_TMP/pat.json" >"$E2E_TMP/pat"
	login alice-pat alice "$(cat "$E2E_TMP/pat")" | tee "$E2E_TMP/pat-login.out"
	grep -q 'Login Succeeded' "$E2E_TMP/pat-login.out"
	docker tag "$LOCAL" "$REG/team/app:pat"
	dockerc alice-pat push "$REG/team/app:pat"
	docker rmi "$REG/team/app:pat"
	dockerc alice-pat pull "$REG/team/app:pat"
	api_expect 200 "alice:$(cat "$E2E_TMP/pat")" GET /api/v1/tokens >"$E2E_TMP/tokens.json"
	expect_eq "alice's tokens" "e2e laptop" "$(jq -r '.[].name' "$E2E_TMP/tokens.json")"
}

htpasswd_logins() {
	local u
	grep -q '^ht-bcrypt:\$2y\$' "$HTPASSWD"
	grep -q '^ht-apr1:\$apr1\$' "$HTPASSWD"
	grep -q '^ht-sha:{SHA}' "$HTPASSWD"
	for u in ht-bcrypt ht-apr1 ht-sha; do
		login "$u" "$u" "$HT_PW" | tee "$E2E_TMP/$u.out"
		grep -q 'Login Succeeded' "$E2E_TMP/$u.out"
		expect_eq "GET /v2/ as $u (Basic)" 200 "$(http_req GET /v2/ "$E2E_TMP/v2" -u "$u:$HT_PW")"
	done
	# A wrong password, from another loopback address (see the top of the file).
	for u in ht-bcrypt ht-apr1 ht-sha; do
		expect_eq "GET /v2/ as $u with a wrong password" 401 \
			"$(http_req GET /v2/ "$E2E_TMP/v2" --interface 127.0.0.2 -u "$u:x$HT_PW")"
	done
	expect_eq "GET /v2/ as an unknown user" 401 \
		"$(http_req GET /v2/ "$E2E_TMP/v2" --interface 127.0.0.4 -u "nobody:$HT_PW")"
}

# The one failed login from 127.0.0.1 (the daemon's address), so far below the limit.
docker_wrong_password() {
	refute login wrong carol "not-$CAROL_PW" >"$E2E_TMP/wrong.out" 2>&1
	cat "$E2E_TMP/wrong.out"
	denied "$E2E_TMP/wrong.out"
}

rate_limited() {
	local i code
	for i in 1 2 3; do
		code=$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.3 -u "erin:bad-$i")
		expect_eq "bad login $i" 401 "$code"
	done
	code=$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.3 -u "erin:bad-4")
	cat "$E2E_TMP/rl.hdr" "$E2E_TMP/rl"
	expect_eq "4th bad login" 429 "$code"
	expect_match "Retry-After" '^[1-9][0-9]*$' "$(hdr Retry-After "$E2E_TMP/rl.hdr")"
	expect_eq "error code" TOOMANYREQUESTS "$(jq -r '.errors[0].code' "$E2E_TMP/rl")"
	# The guessing address backs off, even with the right password...
	expect_eq "erin's right password, same source" 429 \
		"$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.3 -u "erin:$ERIN_PW")"
	expect_eq "token endpoint for erin, same source" 429 \
		"$(http_req GET "/token?service=berth" "$E2E_TMP/rl" --interface 127.0.0.3 -u "erin:$ERIN_PW")"
	expect_match "Retry-After from /token" '^[1-9][0-9]*$' "$(hdr Retry-After "$E2E_TMP/rl.hdr")"
	# ...but erin herself, from elsewhere, is not locked out, and the other
	# accounts behind 127.0.0.3 are not either.
	expect_eq "erin's right password, other source" 200 \
		"$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.5 -u "erin:$ERIN_PW")"
	expect_eq "carol's wrong password from the guessing source" 401 \
		"$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.3 -u "carol:x$CAROL_PW")"
	expect_eq "bob from another source" 200 \
		"$(http_req GET /v2/ "$E2E_TMP/rl" --interface 127.0.0.5 -u "bob:$BOB_PW")"
	expect_eq "token endpoint for erin, other source" 200 \
		"$(http_req GET "/token?service=berth" "$E2E_TMP/rl" --interface 127.0.0.5 -u "erin:$ERIN_PW")"
	expect_eq "POST /token (password grant) for erin, other source" 200 \
		"$(http_req POST /token "$E2E_TMP/rl" --interface 127.0.0.5 \
			--data-urlencode grant_type=password --data-urlencode username=erin \
			--data-urlencode "password=$ERIN_PW" --data-urlencode service=berth)"
}

# --- audit log -------------------------------------------------------------------

audit_log() {
	local d
	d=$(cat "$E2E_TMP/digest")
	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=login&limit=1000' >"$E2E_TMP/logins.json"
	jq -c '.[] | [.actor, .source, .success]' "$E2E_TMP/logins.json" | sort | uniq -c
	jq -e 'any(.[]; .actor == "alice" and .source == "127.0.0.1" and .success == true)' "$E2E_TMP/logins.json"
	jq -e --arg r "$ROBOT" 'any(.[]; .actor == $r and .source == "127.0.0.1" and .success == true)' "$E2E_TMP/logins.json"
	jq -e 'any(.[]; .actor == "ht-apr1" and .success == true)' "$E2E_TMP/logins.json"
	jq -e 'any(.[]; .actor == "ht-sha" and .source == "127.0.0.2" and .success == false)' "$E2E_TMP/logins.json"
	expect_eq "failed logins of erin from 127.0.0.3" 3 \
		"$(jq '[.[] | select(.actor == "erin" and .source == "127.0.0.3" and .success == false)] | length' "$E2E_TMP/logins.json")"

	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=push&limit=1000' >"$E2E_TMP/pushes.json"
	jq -c '.[] | [.actor, .source, .repository, .digest]' "$E2E_TMP/pushes.json"
	jq -e --arg d "$d" 'any(.[]; .actor == "alice" and .repository == "team/app" and .digest == $d and .source == "127.0.0.1")' "$E2E_TMP/pushes.json"
	jq -e --arg r "$ROBOT" --arg d "$d" 'any(.[]; .actor == $r and .repository == "team/robot" and .digest == $d)' "$E2E_TMP/pushes.json"
	# Refused pushes left no push record.
	jq -e 'all(.[]; .repository != "team/x" and .actor != "bob")' "$E2E_TMP/pushes.json"

	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=pull&repository=team/app&limit=1000' >"$E2E_TMP/pulls.json"
	jq -c '.[] | [.actor, .source, .repository, .digest]' "$E2E_TMP/pulls.json"
	jq -e --arg d "$d" 'any(.[]; .actor == "alice" and .digest == $d and .source == "127.0.0.1")' "$E2E_TMP/pulls.json"
	jq -e --arg d "$d" 'any(.[]; .actor == "bob" and .digest == $d)' "$E2E_TMP/pulls.json"
	jq -e 'all(.[]; .repository == "team/app")' "$E2E_TMP/pulls.json"
	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=pull&repository=team/skopeo' >"$E2E_TMP/sk-pulls.json"
	jq -e --arg d "$(cat "$E2E_TMP/sk.digest")" 'any(.[]; .actor == "alice" and .digest == $d)' "$E2E_TMP/sk-pulls.json"
	api_expect 200 "$ADMIN" GET '/api/v1/audit?action=pull&repository=pub/hello' >"$E2E_TMP/pub.json"
	jq -e --arg d "$d" 'any(.[]; .actor == "anonymous" and .digest == $d)' "$E2E_TMP/pub.json"

	api_expect 200 "$ADMIN" GET '/api/v1/audit?actor=carol&limit=1000' >"$E2E_TMP/carol.json"
	jq -e 'all(.[]; .actor == "carol")' "$E2E_TMP/carol.json"
	# Only administrators read the audit log.
	api_expect 403 "alice:$ALICE_PW" GET /api/v1/audit >/dev/null
}

step "anonymous GET /v2/ answers a Bearer challenge" anonymous_challenge
step "management API: users, projects, members, robot" setup
step "docker login as alice (developer in team)" alice_login
step "docker build a FROM-scratch busybox image" build
step "docker push $REG/team/app:1 as alice" alice_push
check "registry serves team/app:1 intact to alice" alice_view
check "docker rmi, pull and run team/app:1 as alice" alice_pull_run
check "token service grants each account its role's actions" token_scopes
check "podman login, pull, push and pull back in team" podman_flow
check "skopeo copy --dest-creds/--src-creds, inspect --creds" skopeo_flow
check "robot account: docker login, push and pull in team" robot_flow
check "robot account: refused outside team" robot_refused_outside
check "carol pushes into her own project" carol_own_project
check "carol: push into team refused (denied)" carol_refused_in_team
check "bob (guest): pull team/app, push refused" bob_guest
check "anonymous pull from the public project" public_pull
check "anonymous pull of team/app refused" anonymous_refused
check "personal access token as the docker login password" personal_access_token
check "htpasswd accounts (bcrypt, apr1, SHA) log in; wrong passwords fail" htpasswd_logins
check "docker login with a wrong password fails" docker_wrong_password
check "a guessing address backs off (429, Retry-After), the owner elsewhere gets in" rate_limited
check "audit log: logins (with source), pushes and pulls" audit_log

e2e_finish
