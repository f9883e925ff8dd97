"""What counts as a secret in text from the instance: the rules, as data.

``cc_bosky.redact`` compiles these tables (on first use, so importing bosky
stays cheap) and applies them; this module holds no logic. Each token format
follows the published shape of the vendor's token (prefix, alphabet, length)
as secret scanners document it; ``tests/data/redaction/sources.json`` names
the scanner rule behind each kind of the benchmark's corpus.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple


class TokenFormat(NamedTuple):
    """A token recognisable on its own, wherever it appears.

    ``prefix`` and ``body`` are regular expressions; the token is
    ``prefix + body``, with no letter, digit or ``_`` on either side.
    ``checksum`` names the format's built-in check where it has one. The
    redactor masks a token of the right shape whatever its checksum: a
    mistyped token is still somebody's secret, and shape alone already
    leaves ordinary text alone.
    """

    kind: str
    prefix: str
    body: str
    checksum: str = ""


B62 = "A-Za-z0-9"
URLSAFE = "A-Za-z0-9_\\-"
B64 = "A-Za-z0-9+/"

TOKENS: Tuple[TokenFormat, ...] = (
    TokenFormat("aws-access-key-id", "(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AGPA|AIPA|ANPA"
                "|ANVA|APKA)", "[A-Z0-9]{16}"),
    # STS session tokens: a versioned protobuf, base64, so the first bytes are fixed.
    TokenFormat("aws-session-token", "(?:IQoJb3JpZ2luX2Vj|FwoGZXIvYXdzE|FQoGZXIvYXdzE)",
                f"[{B64}]{{40,4000}}={{0,2}}"),
    TokenFormat("github-token", "gh[pousr]_", f"[{B62}]{{36,251}}", "crc32-base62"),
    TokenFormat("github-fine-grained-pat", "github_pat_", "[A-Za-z0-9_]{22,255}"),
    TokenFormat("gitlab-token", "(?:glpat|gldt|glrt|glptt|glft|glimt|glagent|gloas|glsoat|glcbt"
                "|glffct|glwt|gltst|glsa)-", "[A-Za-z0-9_.-]{20,300}"),
    TokenFormat("gitlab-runner-registration-token", "GR1348941", f"[{URLSAFE}]{{20,60}}"),
    TokenFormat("slack-token", "(?:xox[abposre]-|xoxe\\.xox[bp]-)", "[A-Za-z0-9-]{10,300}"),
    TokenFormat("slack-app-token", "xapp-", "[0-9]-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]+"),
    TokenFormat("slack-webhook", "(?:https?://)?hooks\\.slack\\.com/(?:services|workflows|triggers)/",
                "[A-Za-z0-9+/_-]{20,120}"),
    TokenFormat("stripe-key", "(?:sk|rk)_(?:test|live|prod)_", f"[{B62}]{{10,247}}"),
    TokenFormat("stripe-webhook-secret", "whsec_", f"[{B62}]{{24,64}}"),
    TokenFormat("anthropic-key", "sk-ant-(?:api|admin|oat|ort)[0-9]{2}-", f"[{URLSAFE}]{{80,200}}"),
    TokenFormat("openai-key", "sk-(?:proj-|svcacct-|admin-|None-)?",
                f"[{URLSAFE}]{{20,200}}T3BlbkFJ[{URLSAFE}]{{20,200}}"),
    TokenFormat("openai-project-key", "sk-(?:proj|svcacct|admin)-", f"[{URLSAFE}]{{40,300}}"),
    TokenFormat("npm-token", "npm_", f"[{B62}]{{36}}", "crc32-base62"),
    TokenFormat("sendgrid-key", "SG\\.", f"[{URLSAFE}]{{16,32}}\\.[{URLSAFE}]{{30,50}}"),
    TokenFormat("google-api-key", "AIza", f"[{URLSAFE}]{{35}}"),
    TokenFormat("google-oauth-secret", "GOCSPX-", f"[{URLSAFE}]{{28}}"),
    TokenFormat("google-oauth-token", "ya29\\.", f"[{URLSAFE}]{{20,2000}}"),
    TokenFormat("vault-token", "hv[sbr]\\.", f"[{URLSAFE}]{{24,400}}"),
    TokenFormat("vault-legacy-token", "s\\.", f"(?=[{B62}]*[A-Z])(?=[{B62}]*[0-9])[{B62}]{{24}}"),
    TokenFormat("digitalocean-token", "do[opr]_v1_", "[a-f0-9]{64}"),
    TokenFormat("pypi-token", "pypi-(?:AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)",
                f"[{URLSAFE}]{{50,1000}}"),
    TokenFormat("huggingface-token", "(?:hf_|api_org_)", "[A-Za-z]{34}"),
    TokenFormat("databricks-token", "dapi", "[a-f0-9]{32}(?:-[0-9])?"),
    TokenFormat("shopify-token", "shp(?:at|ca|pa|ss)_", "[a-fA-F0-9]{32}"),
    TokenFormat("twilio-api-key", "SK", "[0-9a-fA-F]{32}"),
    TokenFormat("mailgun-key", "key-", "[0-9a-f]{32}"),
    TokenFormat("mailchimp-key", "", "[0-9a-f]{32}-us[0-9]{1,2}"),
    TokenFormat("age-secret-key", "AGE-SECRET-KEY-1", "[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"),
    TokenFormat("postman-key", "PMAK-", "[a-f0-9]{24}-[a-f0-9]{34}"),
    TokenFormat("pulumi-token", "pul-", "[a-f0-9]{40}"),
    TokenFormat("doppler-token", "dp\\.(?:pt|st|sa|ct|scim|audit)\\.", f"[{B62}]{{40,44}}"),
    TokenFormat("linear-key", "lin_api_", f"[{B62}]{{40}}"),
    TokenFormat("grafana-token", "(?:glsa_|glc_)", f"[{B64}_]{{32,400}}={{0,3}}"),
    TokenFormat("sentry-token", "sntry[us]_", f"[{B64}_=]{{40,400}}"),
    TokenFormat("heroku-key", "HRKU-AA", f"[{URLSAFE}]{{58}}"),
    TokenFormat("square-token", "(?:sq0atp-|sq0csp-|EAAA)", f"[{URLSAFE}]{{22,60}}"),
    TokenFormat("newrelic-key", "NR(?:AK|II|JS)-", f"[{B62}-]{{19,32}}"),
    TokenFormat("dynatrace-token", "dt0c01\\.", f"[{B62}]{{24}}\\.[{B62}]{{64}}"),
    TokenFormat("alibaba-key-id", "LTAI", f"[{B62}]{{20}}"),
    TokenFormat("artifactory-key", "AKCp", f"[{B62}]{{69}}"),
    TokenFormat("terraform-token", "", f"[{B62}]{{14}}\\.atlasv1\\.[{URLSAFE}=]{{60,70}}"),
    TokenFormat("atlassian-token", "ATATT3", f"[{URLSAFE}=]{{186}}"),
    TokenFormat("planetscale-token", "pscale_(?:tkn|oauth|pw)_", f"[{URLSAFE}=.]{{32,64}}"),
    TokenFormat("rubygems-key", "rubygems_", "[a-f0-9]{48}"),
    TokenFormat("openshift-token", "sha256~", f"[{URLSAFE}]{{43}}"),
    TokenFormat("azure-ad-client-secret", "", "[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
    TokenFormat("telegram-bot-token", "", f"[0-9]{{5,16}}:A[{URLSAFE}]{{34}}"),
    TokenFormat("1password-secret-key", "A3-",
                "[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}"
                "-[A-Z0-9]{5}"),
    TokenFormat("1password-service-token", "ops_eyJ", f"[{B64}]{{100,}}={{0,3}}"),
    TokenFormat("aws-bedrock-key", "ABSK", f"[{B64}]{{100,300}}={{0,2}}"),
    TokenFormat("flyio-token", "(?:fo1_|fm1[ar]_|fm2_)", f"[{B64}_=-]{{40,}}"),
    TokenFormat("intra42-secret", "s-s4t2(?:ud|af)-", "[a-f0-9]{64}"),
    TokenFormat("sourcegraph-token", "sgp_", "(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}"),
    TokenFormat("discord-webhook", "(?:https?://)?(?:ptb\\.|canary\\.)?discord(?:app)?\\.com/api/"
                "webhooks/", f"[0-9]{{17,20}}/[{URLSAFE}]{{60,68}}"),
    TokenFormat("cloudflare-origin-ca-key", "v1\\.0-", "[a-f0-9]{24}-[a-f0-9]{146}"),
    TokenFormat("clojars-token", "CLOJARS_", "[a-z0-9]{60}"),
    TokenFormat("teams-webhook", "https://[a-z0-9-]+\\.webhook\\.office\\.com/webhookb2/",
                "[A-Za-z0-9@/-]{40,300}"),
    # JSON Web Tokens: header and payload, with or without a signature
    # (an unsigned "alg":"none" token is two segments and a dot).
    TokenFormat("jwt", "eyJ", f"[{URLSAFE}]{{8,}}\\.[{URLSAFE}]{{8,}}(?:\\.[{URLSAFE}]*)?"),
)

# Words that make a key name a secret's: `db_password=`, `"apiKey":`, `--token`.
# "pass" only as a whole word part (DB_PASS, --pass), never bypass/passed/PASS:.
SECRET_WORDS: Tuple[str, ...] = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "api[_-]?key", "apikey",
    "access[_-]?key", "private[_-]?key", "account[_-]?key", "shared[_-]?access[_-]?key",
    "master[_-]?key", "signing[_-]?key", "encryption[_-]?key", "client[_-]?key",
    "credentials?", "auth", "cookie", "session[_-]?key", "sas",
    "(?<=[_.-])pass(?![a-z])", "(?<![a-z])pass(?=[_.-])",
    # STRIPE_KEY, app.key, signing-key: "key" as the last part of a name.
    "(?<=[_.-])key(?![a-z0-9])",
    # Names that hold a credential with none of the words above, as the
    # scanners' keyword rules list them: SONAR_LOGIN (a token), GH_PAT,
    # CI_JOB_JWT, DOCKER_CREDS, SENTRY_DSN / DATABASE_DSN.
    "sonar[_.-]?login", "(?<=[_.-])(?:pat|jwt|creds|dsn)(?![a-z0-9])",
)

# Bundler's per-host credentials, BUNDLE_GEMS__EXAMPLE__COM=user:password
# (the host's dots written as "__"); BUNDLE_BUILD__<gem> and
# BUNDLE_MIRROR__<url> hold build flags and URLs.
BUNDLER_HOST_NAME = r"BUNDLE_(?!BUILD__|MIRROR__)[A-Z0-9_]*[A-Z0-9]__[A-Z0-9]+"

# Keys under which a Kubernetes Secret manifest keeps its values.
KUBERNETES_SECRET_DATA = ("data", "stringData")

# Keys that hold no secret though a word above is in them: public material
# and database keys.
NOT_SECRET_KEYS = "public|primary|foreign|partition|sort|range|idempotency|routing|cache|host_?key"

# Values that are clearly not the secret itself.
PLACEHOLDER = (r"(?:\$\{\{[^}\n]*\}\}|\$\{[^}\n]*\}|%[A-Za-z_][A-Za-z0-9_]*%"
               r"|\$\([^)\n]*\)|`[^`\n]*`|\$\(?[A-Za-z_][A-Za-z0-9_]*\)?"
               r"|\{\{[^}\n]*\}\}|%\(?\w*\)?s"
               r"|<[^>\n]*>|\*+|x{3,}|X{3,}|\.{3}|null|none|None|nil|true|false|True|False"
               r"|yes|no|ok|on|off|enabled|disabled|required|optional|hidden|masked|redacted"
               r"|unset|empty)")

# Key names ending so point at a secret, they do not hold it: secret_name, token_arn.
REFERENCE_SUFFIXES = ("name|names|id|ids|arn|path|file|dir|ref|url|uri|version|type|length|ttl"
                      "|expiry|expiration|expires|count|policy|prompt|source|header|field")

# A value that reads as a sentence (`passwd: password expiry information
# changed.`) is a program's message, not a secret: it has one of these words.
PROSE_WORDS = frozenset((
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "has", "have", "had",
    "do", "does", "did", "for", "from", "to", "of", "in", "on", "at", "by", "with", "without",
    "not", "no", "will", "would", "can", "cannot", "could", "should", "must", "may", "might",
    "changed", "updated", "expired", "expiry", "expires", "information", "successfully",
    "success", "failed", "failure", "error", "errors", "invalid", "incorrect", "required",
    "missing", "found", "set", "unchanged", "manipulation", "authentication", "tokens", "token",
    "password", "passwords", "policy", "using", "user", "users", "all", "and", "or", "please",
    "enter", "new", "retype", "you", "your", "this", "that", "it", "its", "now", "ok", "done",
    "when", "after", "before", "into", "unable", "could't", "cannot", "denied", "refused",
    "match", "matched", "check", "checking", "generated", "generating", "saved", "reading",
    "writing", "loaded", "loading",
))

# HTTP headers whose whole value is a credential.
SECRET_HEADERS: Tuple[str, ...] = (
    "authorization", "proxy-authorization", "x-api-key", "api-key", "apikey", "x-auth-token",
    "x-access-token", "x-amz-security-token", "x-vault-token", "private-token",
    "x-goog-api-key", "cookie", "set-cookie", "x-csrf-token", "x-xsrf-token",
    "ocp-apim-subscription-key", "x-functions-key", "x-figma-token", "x-shopify-access-token",
    "x-registry-auth", "circle-token", "x-jfrog-art-api", "dd-api-key", "dd-application-key",
)

# URL query parameters that carry a credential (Azure SAS `sig`, presigned URLs).
SECRET_QUERY_PARAMS: Tuple[str, ...] = (
    "sig", "signature", "x-amz-signature", "x-amz-security-token", "x-amz-credential",
    "x-goog-signature", "x-goog-credential", "token", "access_token", "refresh_token",
    "id_token", "api_key", "apikey", "api-key", "key", "password", "passwd", "pass", "pwd",
    "secret", "client_secret", "auth", "code",
)

# Commands whose `-p VALUE` is a password (never ssh's port or mkdir's parents).
P_IS_PASSWORD: Tuple[str, ...] = (
    "docker", "podman", "buildah", "skopeo", "nerdctl", "helm", "oras", "crane", "sshpass",
    "finch",
)

# What the high-entropy fallback looks at, and what it leaves alone.
ENTROPY_MIN_LENGTH = 24
# Bits per character a run must reach, as a share of the most its length
# allows (log2 of the length, up to 6 for base64): random tokens sit near 0.9,
# words and CamelCase names well below.
ENTROPY_SHARE = 0.82
# Public material that looks random: SSH fingerprints, key types in front of
# public keys, subresource-integrity and digest prefixes.
PUBLIC_PREFIXES = (r"(?:SHA256|SHA1|MD5|sha256|sha384|sha512|sha1)[:-]"
                   r"|(?:ssh-(?:rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp\d+"
                   r"|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com"
                   r"|[\w.-]+-cert-v01@openssh\.com)[ \t]+")
# Digests that start the run itself (subresource integrity: sha512-...).
PUBLIC_STARTS = r"sha(?:1|256|384|512)[-~]"
# PEM labels of public material: a certificate's body is as random as a key's.
PUBLIC_PEM = (r"CERTIFICATE|PUBLIC KEY|RSA PUBLIC KEY|X509 CRL|CERTIFICATE REQUEST"
              r"|NEW CERTIFICATE REQUEST|PGP PUBLIC KEY BLOCK|PGP SIGNATURE|SSH2 PUBLIC KEY")
