#!/bin/sh
# tpm-attest.sh: attest a runner's TPM to a gatehouse attestation authority with tpm2-tools.
#
#   GATEHOUSE_URL=http://127.0.0.1:8700 GATEHOUSE_HOST=runner-7 GATEHOUSE_HOST_KEY=host.key.pem \
#   TPM2TOOLS_TCTI=swtpm:path=/run/tpm.sock \
#     tpm-attest.sh --job JOB_ID [--claim] --event-log events.json --runner-key runner.jwk
#
# Every request is signed by the enrolled runner host (GATEHOUSE_HOST, its P-256 private key in
# PEM at GATEHOUSE_HOST_KEY): a compact ES256 JWS in the Gatehouse-Proof header over the act, the
# job and the SHA-256 of the request's canonical JSON (docs/trust-model.md). --claim first claims
# the (unclaimed) job for the host. The event log (a JSON array of {pcr, type, name, digest}) must
# already be extended into the TPM's SHA-256 PCRs; --extend extends it first. The runner key is the
# runner's public EC P-256 JWK, to which the token will be bound. Prints the authority's JSON answer
# ({"token", ...}) on stdout. Exit 0 on success, 3 when the authority refused the evidence (its
# failed_checks on stderr), 1 on any other error. Needs: tpm2-tools, curl, jq, openssl, base64,
# basenc, od. The protocol is in docs/attestation.md.
set -eu

AK=0x81008001        # persistent AK handle (restricted ECC P-256 signing key under the EK)
EK=0x81010001        # persistent TCG RSA 2048 EK
EK_CERT_NV=0x1c00002 # NV index of the RSA EK certificate
JOB=""
EVENTS=""
RUNNER_KEY=""
EXTEND=0
CLAIM=0

die() { echo "tpm-attest: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --job) JOB=$2; shift 2 ;;
    --event-log) EVENTS=$2; shift 2 ;;
    --runner-key) RUNNER_KEY=$2; shift 2 ;;
    --ak) AK=$2; shift 2 ;;
    --ek) EK=$2; shift 2 ;;
    --ek-cert-nv) EK_CERT_NV=$2; shift 2 ;;
    --extend) EXTEND=1; shift ;;
    --claim) CLAIM=1; shift ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$JOB" ] && [ -n "$EVENTS" ] && [ -n "$RUNNER_KEY" ] || die "usage: tpm-attest.sh --job ID --event-log FILE --runner-key JWK [--extend]"
: "${GATEHOUSE_URL:?set GATEHOUSE_URL}"
: "${GATEHOUSE_HOST:?set GATEHOUSE_HOST}"
: "${GATEHOUSE_HOST_KEY:?set GATEHOUSE_HOST_KEY}"
: "${TPM2TOOLS_TCTI:?set TPM2TOOLS_TCTI}"
export TPM2TOOLS_TCTI

W=$(mktemp -d)
trap 'tpm2_flushcontext "$W/session.ctx" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
hex() { od -An -v -tx1 | tr -d ' \n'; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
proof() { # act job request-file -> the host's signed request (compact ES256 JWS) on stdout
  digest=$(jq -cS . "$3" | tr -d '\n' | openssl dgst -sha256 -hex | sed 's/^.*= //')
  jti=$(openssl rand -base64 18 | tr '+/' '-_' | tr -d '=')
  header=$(jq -cn --arg kid "$GATEHOUSE_HOST" '{alg: "ES256", typ: "gatehouse-host-request+jws", kid: $kid}' | tr -d '\n' | b64url)
  payload=$(jq -cn --arg act "$1" --arg job "$2" --arg digest "$digest" --arg jti "$jti" --argjson iat "$(date +%s)" \
    '{act: $act, digest: $digest, iat: $iat, jti: $jti} + (if $job == "" then {} else {job: $job} end)' | tr -d '\n' | b64url)
  printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$GATEHOUSE_HOST_KEY" >"$W/sig.der"
  # ES256 wants r || s, 32 bytes each; openssl gives a DER SEQUENCE of two INTEGERs.
  rs=$(openssl asn1parse -inform DER -in "$W/sig.der" | sed -n 's/.*INTEGER *:\([0-9A-Fa-f]*\)$/\1/p' \
    | while read -r n; do printf '%064s' "$n" | tr ' ' 0 | tail -c 64; done)
  printf '%s.%s.%s' "$header" "$payload" "$(printf '%s' "$rs" | tr 'a-f' 'A-F' | basenc --base16 -d | b64url)"
}
post() { # path body-file act job [request-file] -> answer in $W/answer, HTTP status on stdout
  curl -sS -o "$W/answer" -w '%{http_code}' -X POST \
    -H "Gatehouse-Proof: $(proof "$3" "$4" "${5:-$2}")" -H 'Content-Type: application/json' \
    --data-binary "@$2" "$GATEHOUSE_URL$1"
}
refused() {
  jq -er '.failed_checks[] | "\(.check): \(.message)"' "$W/answer" >&2 2>/dev/null || cat "$W/answer" >&2
  exit 3
}

if [ "$CLAIM" = 1 ]; then
  echo '{}' >"$W/empty.json"
  jq -n --arg job "$JOB" '{jobId: $job}' >"$W/claim.json"
  status=$(post "/v1/jobs/$JOB/claim" "$W/empty.json" claim "$JOB" "$W/claim.json")
  [ "$status" = 200 ] || { cat "$W/answer" >&2; exit 1; }
fi

if [ "$EXTEND" = 1 ]; then
  jq -r '.[] | "\(.pcr):sha256=\(.digest)"' "$EVENTS" | while read -r e; do tpm2_pcrextend "$e"; done
fi

# 1. Identity: the EK certificate (trimmed to its DER) and the AK's public area.
tpm2_nvread "$EK_CERT_NV" -o "$W/ek.nv" 2>/dev/null
openssl x509 -inform der -in "$W/ek.nv" -outform der -out "$W/ek.der"
tpm2_readpublic -c "$AK" -o "$W/ak.pub" -f tss >/dev/null

# 2. Challenge.
jq -n --arg ek "$(base64 -w0 "$W/ek.der")" --arg ak "$(base64 -w0 "$W/ak.pub")" --arg job "$JOB" \
  --slurpfile key "$RUNNER_KEY" \
  '{ek_cert: $ek, ak_public: $ak, runner_key: ($key[0] | {kty, crv, x, y}), job_id: $job}' >"$W/challenge.json"
status=$(post /v1/attestation/challenge "$W/challenge.json" challenge "$JOB")
[ "$status" = 200 ] || refused
jq -r .session "$W/answer" >"$W/session"
jq -r .nonce "$W/answer" | base64 -d >"$W/nonce"
jq -r .credential "$W/answer" | base64 -d >"$W/cred.blob"
PCRS=$(jq -r '.pcr_selection.sha256 | map(tostring) | join(",")' "$W/answer")

# 3. Credential activation: proves the AK lives in the TPM that holds the certified EK.
tpm2_startauthsession --policy-session -S "$W/session.ctx"
tpm2_policysecret -S "$W/session.ctx" -c e >/dev/null
tpm2_activatecredential -c "$AK" -C "$EK" -i "$W/cred.blob" -o "$W/secret" -P "session:$W/session.ctx" >/dev/null
tpm2_flushcontext "$W/session.ctx"

# 4. Quote with qualifying data SHA-256(nonce || RFC 7638 thumbprint of the runner key).
jq -j '"{\"crv\":\"\(.crv)\",\"kty\":\"EC\",\"x\":\"\(.x)\",\"y\":\"\(.y)\"}"' "$RUNNER_KEY" \
  | openssl dgst -sha256 -binary >"$W/jkt"
QUALIFYING=$(cat "$W/nonce" "$W/jkt" | openssl dgst -sha256 -binary | hex)
tpm2_quote -c "$AK" -l "sha256:$PCRS" -q "$QUALIFYING" -m "$W/quote.msg" -s "$W/quote.sig" -g sha256 >/dev/null
tpm2_pcrread "sha256:$PCRS" \
  | sed -n 's/^ *\([0-9][0-9]*\) *: *0x\([0-9A-Fa-f]*\)$/\1 \2/p' \
  | jq -R -n '[inputs | split(" ") | {key: .[0], value: (.[1] | ascii_downcase)}] | from_entries' >"$W/pcrs.json"

# 5. Evidence.
jq -n --arg session "$(cat "$W/session")" --arg secret "$(base64 -w0 "$W/secret")" \
  --arg quote "$(base64 -w0 "$W/quote.msg")" --arg sig "$(base64 -w0 "$W/quote.sig")" \
  --slurpfile pcrs "$W/pcrs.json" --slurpfile events "$EVENTS" \
  '{session: $session, secret: $secret, quote: $quote, signature: $sig, pcrs: {sha256: $pcrs[0]}, event_log: $events[0]}' \
  >"$W/evidence.json"
status=$(post /v1/attestation/evidence "$W/evidence.json" evidence "")
[ "$status" = 200 ] || refused
cat "$W/answer"
echo
