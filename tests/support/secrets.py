"""Secrets of every format bosky redacts, made up at run time, and lines that carry them.

Nothing here is a real credential or a scanner's test data: each maker
builds a random token of the published shape (prefix, alphabet, length,
and the format's checksum where it has one), so this file holds nothing a
secret scanner should flag. ``tests/data/redaction/sources.json`` names the
public scanner rule each kind follows. Used by the corpus test, the property
tests and ``benchmarks/redact.py``; ``corpus(seed)`` is deterministic.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import string
import uuid
from typing import Callable, Dict, List, NamedTuple, Tuple

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
HEX = "0123456789abcdef"
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
WORDS = ("correct", "horse", "battery", "staple", "orbit", "maple", "tiger", "velvet", "harbor",
         "quartz", "lantern", "meadow", "copper", "falcon", "ember", "willow", "canyon", "glacier")


def rand(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def mixed(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """A random token with upper, lower and digits, as real random tokens of this length have."""
    while True:
        token = rand(rng, n, alphabet)
        if (any(c.isupper() for c in token) and any(c.islower() for c in token)
                and any(c.isdigit() for c in token)):
            return token


def base62_crc32(data: str) -> str:
    """The 6-character checksum GitHub and npm tokens end with: CRC32 in base 62."""
    value = binascii.crc32(data.encode())
    out = ""
    while value:
        value, digit = divmod(value, 62)
        out = BASE62[digit] + out
    return out.rjust(6, "0")


def checksum_ok(token: str) -> bool:
    """True for a GitHub (ghp_ ...) or npm token whose checksum matches."""
    body = token.split("_", 1)[1]
    return base62_crc32(body[:-6]) == body[-6:]


def _checksummed(prefix: str) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        body = rand(rng, 30)
        return prefix + body + base62_crc32(body)
    return make


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(rng: random.Random, segments: int) -> str:
    header = _b64url(json.dumps({"alg": "HS256" if segments == 3 else "none",
                                 "typ": "JWT"}).encode())
    claims = {"sub": rand(rng, 8), "exp": rng.randint(10**9, 2 * 10**9)}
    payload = _b64url(json.dumps(claims).encode())
    if segments == 2:
        return f"{header}.{payload}" + rng.choice(["", "."])
    return f"{header}.{payload}.{_b64url(bytes(rng.getrandbits(8) for _ in range(32)))}"


def _password(rng: random.Random) -> str:
    """What people type: words, digits and punctuation, spaces, braces and commas included."""
    shape = rng.randrange(4)
    if shape == 0:
        return " ".join(rng.sample(WORDS, 4))
    if shape == 1:
        return rng.choice(WORDS).title() + rng.choice(",}{;#!@") + str(rng.randint(10, 9999)) \
            + rng.choice(WORDS)
    if shape == 2:
        return mixed(rng, rng.randint(10, 24), ALNUM + "!#%^*_-+")
    return rng.choice(WORDS) + " " + mixed(rng, 8) + "}," + rng.choice(WORDS)


def pem(rng: random.Random, label: str, lines: int = 8) -> str:
    body = "\n".join(rand(rng, 64, B64) for _ in range(lines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


# kind -> maker of one secret value
MAKERS: Dict[str, Callable[[random.Random], str]] = {
    "aws-access-key-id": lambda r: r.choice(["AKIA", "ASIA"]) + rand(r, 16, string.ascii_uppercase
                                                                      + "234567"),
    "aws-secret-access-key": lambda r: mixed(r, 40, B64),
    "aws-session-token": lambda r: "IQoJb3JpZ2luX2Vj" + mixed(r, r.randint(200, 400), B64),
    "github-token": lambda r: _checksummed(r.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]))(r),
    "github-fine-grained-pat": lambda r: "github_pat_" + rand(r, 22) + "_" + rand(r, 59),
    "gitlab-token": lambda r: r.choice(["glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glimt-",
                                        "glsoat-", "glffct-", "gloas-", "glagent-"])
    + rand(r, r.choice([20, 25, 50, 64]), URLSAFE),
    "gitlab-runner-registration-token": lambda r: "GR1348941" + rand(r, 20, URLSAFE),
    "slack-token": lambda r: r.choice(["xoxb-", "xoxp-", "xoxa-2-", "xoxe-1-"])
    + "-".join([rand(r, 12, string.digits), rand(r, 13, string.digits), rand(r, 24)]),
    "slack-app-token": lambda r: f"xapp-1-A{rand(r, 10, string.ascii_uppercase + string.digits)}"
    f"-{rand(r, 13, string.digits)}-{rand(r, 64, HEX)}",
    "slack-webhook": lambda r: "https://hooks.slack.com/services/T"
    + rand(r, 8, string.ascii_uppercase)
    + "/B" + rand(r, 8, string.ascii_uppercase) + "/" + rand(r, 24),
    "stripe-key": lambda r: r.choice(["sk_live_", "sk_test_", "rk_live_", "rk_test_"])
    + rand(r, r.choice([24, 99])),
    "openai-key": lambda r: r.choice([
        "sk-" + rand(r, 20) + "T3BlbkFJ" + rand(r, 20),
        "sk-proj-" + rand(r, 74, URLSAFE) + "T3BlbkFJ" + rand(r, 74, URLSAFE),
        "sk-proj-" + rand(r, 156, URLSAFE)]),
    "anthropic-key": lambda r: r.choice(["sk-ant-api03-", "sk-ant-admin01-"])
    + rand(r, 93, URLSAFE) + "AA",
    "npm-token": _checksummed("npm_"),
    "sendgrid-key": lambda r: f"SG.{rand(r, 22, URLSAFE)}.{rand(r, 43, URLSAFE)}",
    "google-api-key": lambda r: "AIza" + rand(r, 35, URLSAFE),
    "vault-token": lambda r: r.choice(["hvs." + rand(r, 95, URLSAFE),
                                       "hvb." + rand(r, 150, URLSAFE),
                                       "s." + mixed(r, 24)]),
    "digitalocean-token": lambda r: r.choice(["dop_v1_", "doo_v1_", "dor_v1_"]) + rand(r, 64, HEX),
    "pypi-token": lambda r: "pypi-AgEIcHlwaS5vcmc" + rand(r, r.randint(60, 180), URLSAFE),
    "huggingface-token": lambda r: "hf_" + rand(r, 34, string.ascii_letters),
    "databricks-token": lambda r: "dapi" + rand(r, 32, HEX),
    "shopify-token": lambda r: r.choice(["shpat_", "shpss_", "shpca_", "shppa_"])
    + rand(r, 32, HEX),
    "twilio-api-key": lambda r: "SK" + rand(r, 32, HEX),
    "mailgun-key": lambda r: "key-" + rand(r, 32, HEX),
    "age-secret-key": lambda r: "AGE-SECRET-KEY-1"
    + rand(r, 58, "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"),
    "postman-key": lambda r: f"PMAK-{rand(r, 24, HEX)}-{rand(r, 34, HEX)}",
    "pulumi-token": lambda r: "pul-" + rand(r, 40, HEX),
    "doppler-token": lambda r: "dp.pt." + rand(r, 43),
    "linear-key": lambda r: "lin_api_" + rand(r, 40),
    "grafana-token": lambda r: r.choice(["glsa_" + rand(r, 32) + "_" + rand(r, 8, HEX),
                                         "glc_" + rand(r, 60, B64)]),
    "heroku-key": lambda r: "HRKU-AA" + rand(r, 58, URLSAFE),
    "square-token": lambda r: r.choice(["sq0atp-" + rand(r, 22, URLSAFE),
                                        "sq0csp-" + rand(r, 43, URLSAFE)]),
    "newrelic-key": lambda r: "NRAK-" + rand(r, 27, string.ascii_uppercase + string.digits),
    "dynatrace-token": lambda r: f"dt0c01.{rand(r, 24)}.{rand(r, 64)}",
    "alibaba-key-id": lambda r: "LTAI" + rand(r, 20),
    "terraform-token": lambda r: f"{rand(r, 14)}.atlasv1.{rand(r, 67, URLSAFE)}",
    "telegram-bot-token": lambda r: f"{r.randint(10**8, 10**9)}:AA{rand(r, 33, URLSAFE)}",
    "azure-ad-client-secret": lambda r: rand(r, 3) + str(r.randint(0, 9)) + "Q~"
    + rand(r, 34, URLSAFE),
    "azure-storage-key": lambda r: mixed(r, 86, B64) + "==",
    "1password-secret-key": lambda r: "A3-" + "-".join(
        rand(r, n, string.ascii_uppercase + string.digits) for n in (6, 11, 5, 5, 5)),
    "aws-bedrock-key": lambda r: "ABSKQmVkcm9ja0FQSUtleS1" + mixed(r, 108, B64) + "=",
    "flyio-token": lambda r: "fo1_" + rand(r, 43, URLSAFE),
    "sourcegraph-token": lambda r: "sgp_" + rand(r, 16, HEX) + "_" + rand(r, 40, HEX),
    "intra42-secret": lambda r: r.choice(["s-s4t2ud-", "s-s4t2af-"]) + rand(r, 64, HEX),
    "cloudflare-origin-ca-key": lambda r: f"v1.0-{rand(r, 24, HEX)}-{rand(r, 146, HEX)}",
    "clojars-token": lambda r: "CLOJARS_" + rand(r, 60, string.ascii_lowercase + string.digits),
    "jwt": lambda r: _jwt(r, 3),
    "jwt-two-segment": lambda r: _jwt(r, 2),
    "high-entropy-token": lambda r: mixed(r, r.randint(32, 64), ALNUM + "+/_-"),
    "password": _password,
    "uuid-api-key": lambda r: str(uuid.UUID(int=r.getrandbits(128), version=4)),
    "xml-config-secret": lambda r: r.choice([_password, lambda r2: mixed(r2, 32)])(r),
    "bundler-credentials": lambda r: r.choice([f"{rand(r, 8, HEX)}:{rand(r, 8, HEX)}",
                                               f"deploy:{mixed(r, 20)}"]),
    "kubernetes-secret-data": lambda r: base64.b64encode(
        bytes(r.getrandbits(8) for _ in range(r.randint(8, 48)))).decode(),
    "keyword-call-argument": lambda r: r.choice([
        _password, lambda r2: str(uuid.UUID(int=r2.getrandbits(128), version=4)),
        lambda r2: rand(r2, 40, HEX)])(r),
    "well-known-env-name": lambda r: r.choice([rand(r, 40, HEX), "sqp_" + rand(r, 40, HEX),
                                               "deploy:" + mixed(r, 16)]),
    "yaml-block-scalar": lambda r: r.choice([_password, lambda r2: mixed(r2, 48, B64)])(r),
}

# Kinds whose secret is only a secret because of where it stands: made by
# a maker above, placed by the contexts of the kind in CONTEXTS.
CONTEXTUAL = ("password", "aws-secret-access-key", "azure-storage-key", "high-entropy-token",
              "uuid-api-key", "xml-config-secret", "bundler-credentials",
              "kubernetes-secret-data", "keyword-call-argument", "well-known-env-name",
              "yaml-block-scalar")

# Where a bare token stands in a log line.
BARE: Tuple[str, ...] = (
    "{s}", "+ echo {s}", "using {s} for the upload", '"{s}"', "({s})", "[{s}]", "'{s}',",
    "{s};", "<{s}>", "value={s}", "`{s}`", "got token:{s}", "x {s}.",
)
# Where a keyword assignment stands, in each common syntax.
ASSIGNED: Tuple[str, ...] = (
    "export API_TOKEN={s}", "+ API_TOKEN={s} ./deploy.sh", "api_key: {s}", "  token: '{s}'",
    '{{"token": "{s}", "user": "deploy"}}', '{{"user":"deploy","secret":"{s}"}}',
    "password = {s}", "client_secret={s}", "--token {s}", "--api-key={s}",
    "Authorization: Bearer {s}", "X-Api-Key: {s}", "-H \"Authorization: Bearer {s}\"",
    "+ curl -u {s}: https://api.example.com/v1/charges", "STRIPE_KEY ?= {s}", "https://api.example.com/v1?api_key={s}&x=1",
    "{{'password': '{s}', 'host': 'db'}}", "AUTH_TOKEN=\"{s}\"", "secret_key => '{s}'",
    '"{{\\"token\\": \\"{s}\\"}}"',
)
PASSWORDS: Tuple[str, ...] = (
    "DB_PASSWORD={q}", "export PGPASSWORD={q}", "password: {s}", "  db_password: {s}",
    '{{"password": "{s}", "user": "app"}}', '{{"user": "app", "password": "{s}", "token": "{s}"}}',
    "password = {s}", "passwd={q}", "+ mysql --password={q} -e 'select 1'",
    "+ createuser --password {q} app", "+ docker login -u deploy -p {q} registry.example.com",
    "+ mysql -uroot -p{q} app < schema.sql", "+ curl -u deploy:{q} https://repo.example/x",
    "+ git clone https://deploy:{u}@git.example.com/app.git",
    "DATABASE_URL=postgres://app:{u}@db:5432/app", "redis://:{u}@cache:6379/0",
    "[database]\npassword = {s}", "  PASSWORD: \"{s}\"", "Config{{user=app, password={q}}}",
    "--db-password '{s}'", "sshpass -p {q} ssh deploy@10.0.0.5",
    "+ curl -s --user  'api:{s}' https://api.example.com/v3/messages",
    "DB_PASSWORD ?= {q}", "const DB_KEY = \"{s}\"", "app.signing-key: {s}",
    "password => \"{s}\"",
)
AWS_SECRET: Tuple[str, ...] = (
    "{s}", "+ echo {s}", "aws_secret_access_key = {s}", "AWS_SECRET_ACCESS_KEY={s}",
    '"SecretAccessKey" : "{s}",', "export AWS_SECRET_ACCESS_KEY={s}", "secret: {s}",
)
AZURE_KEY: Tuple[str, ...] = (
    "DefaultEndpointsProtocol=https;AccountName=logs;AccountKey={s};EndpointSuffix=core.windows.net",
    "AZURE_STORAGE_KEY={s}", "account_key: {s}", "{s}", "key1 {s}",
)
SESSION: Tuple[str, ...] = (
    "session: {s}", "aws_session_token = {s}", "AWS_SESSION_TOKEN={s}", '"Token" : "{s}",',
    "{s}", "X-Amz-Security-Token: {s}",
)
# A UUID is an id, unless a secret's name stands in front of it.
UUID_KEY: Tuple[str, ...] = (
    "api_key={s}", '"apiKey": "{s}",', "  token: {s}", "export HEROKU_API_KEY={s}",
    "X-Api-Key: {s}", "+ ./sync --api-key {s}", 'HUBSPOT_API_KEY = "{s}"', "_authToken={s}",
    "client_secret: '{s}'",
)
XML_CONFIG: Tuple[str, ...] = (
    '      <add key="ClearTextPassword" value="{s}" />', '<add key="Password" value="{s}"/>',
    '    <add key="ApiToken" value="{s}" />', '<add key="StorageAccountKey" value="{s}"></add>',
    "<param name='client_secret' value='{s}'/>", '  <setting name="SmtpPassword" value="{s}" />',
)
BUNDLER: Tuple[str, ...] = (
    "BUNDLE_GEMS__EXAMPLE__COM={s}", 'export BUNDLE_ENTERPRISE__VENDOR__IO="{s}"',
    'BUNDLE_RUBYGEMS__PKG__EXAMPLE__COM: "{s}"', "export BUNDLE_GEMS__VENDOR__NET = {s};",
    "+ BUNDLE_GEMS__EXAMPLE__COM={s} bundle install --jobs 4",
    "  BUNDLE_PRIVATE__GEMS__EXAMPLE__ORG: {s}",
)
# A Secret manifest, printed by kubectl (keys sorted: data before kind) or cat.
KUBERNETES_SECRET: Tuple[str, ...] = (
    "+ kubectl get secret app -o yaml\napiVersion: v1\ndata:\n  username: YXBw\n"
    "  password: {s}\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque",
    "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: registry\n"
    "type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {s}\n---",
    "apiVersion: v1\nitems:\n- apiVersion: v1\n  data:\n    app.conf: bG9nPWluZm8=\n"
    "  kind: ConfigMap\n- apiVersion: v1\n  data:\n    tls.key: {s}\n  kind: Secret\n"
    "kind: List",
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  dsn-user: app\n"
    "  conn: \"{s}\"",
    "apiVersion: 'v1'\ndata:\n  extra: '{s}'\nkind: 'Secret'",
    "kind: Secret\ndata:\n  # PEM, base64\n  tls.key: |\n    {s}\n    {s}\ntype: kubernetes.io/tls",
)
CALL_ARGUMENT: Tuple[str, ...] = (
    'os.getenv("DB_PASSWORD", "{s}")', "os.environ.get('API_TOKEN', '{s}')",
    'cfg := GetEnvOrDefault("api_token", "{s}")', 'settings.setdefault("client_secret", "{s}")',
    'ENV.fetch("SECRET_KEY_BASE", "{s}")', "key = getenv('SECRET_KEY', '{s}')",
    'process.env.get( "signingKey" , "{s}" )',
    'System.getenv().getOrDefault("DB_PASS", "{s}")',
)
WELL_KNOWN_NAME: Tuple[str, ...] = (
    'SONAR_LOGIN = "{s}"', "sonar.login={s}", "+ mvn sonar:sonar -Dsonar.login={s}",
    "export GH_PAT={s}", "CI_JOB_JWT: {s}", "DOCKER_CREDS={s}",
    "SENTRY_DSN=https://{s}@o0.ingest.example.io/42", "export AZURE_DEVOPS_EXT_PAT={s}",
)
YAML_BLOCK: Tuple[str, ...] = (
    "password: |\n  {s}\nuser: app", "  db_password: >-\n    {s}\n  db_user: app",
    "- client_secret: |\n    {s}\n\n    {s}\n  name: ci", "token: |+\n  {s}\n",
    "secrets:\n  api_key: >\n    {s}\n  region: eu-west-1",
)

CONTEXTS: Dict[str, Tuple[str, ...]] = {
    "uuid-api-key": UUID_KEY,
    "xml-config-secret": XML_CONFIG,
    "bundler-credentials": BUNDLER,
    "kubernetes-secret-data": KUBERNETES_SECRET,
    "keyword-call-argument": CALL_ARGUMENT,
    "well-known-env-name": WELL_KNOWN_NAME,
    "yaml-block-scalar": YAML_BLOCK,
    "password": PASSWORDS,
    "aws-secret-access-key": AWS_SECRET,
    "azure-storage-key": AZURE_KEY,
    "aws-session-token": SESSION,
    "high-entropy-token": BARE,
}


class Sample(NamedTuple):
    kind: str
    text: str
    secrets: Tuple[str, ...]  # none of these may be left in the redacted text


def _fragments(secret: str) -> Tuple[str, ...]:
    """The secret and each long piece of it: half a passphrase left is a leak too."""
    pieces = [p for p in secret.replace(",", " ").replace("}", " ").replace("{", " ").split()
              if len(p) >= 6]
    return tuple(dict.fromkeys([secret, *pieces]))


def place(template: str, secret: str) -> str:
    quoted = f"'{secret}'" if any(c in secret for c in " ;{}<>&|#!") else secret
    userinfo = "".join(c if c.isalnum() or c in "-_." else f"%{ord(c):02X}" for c in secret)
    return template.format(s=secret, q=quoted, u=userinfo)


def sample(rng: random.Random, kind: str, template: str) -> Sample:
    secret = MAKERS[kind](rng)
    text = place(template, secret)
    if "{u}" in template:  # percent-encoded in a URL: that is what must go
        secret = place("{u}", secret)
    return Sample(kind, text, _fragments(secret))


def corpus(seed: int = 16, per_kind: int = 14) -> List[Sample]:
    """Deterministic samples: each kind in its bare and its assigned contexts."""
    rng = random.Random(seed)
    out: List[Sample] = []
    for kind in MAKERS:
        templates = CONTEXTS.get(kind) or BARE + ASSIGNED
        for i in range(max(per_kind, len(templates))):
            # A stride coprime with the number of contexts: bare and assigned alike.
            out.append(sample(rng, kind, templates[i * 7 % len(templates)]))
    for label in ("RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY",
                  "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK", "DSA PRIVATE KEY"):
        for cut in ("whole", "no-end", "no-begin", "json"):
            key = pem(rng, label)
            lines = key.splitlines()
            body = tuple(line for line in lines if not line.startswith("-----"))
            text = {"whole": f"+ cat /root/.ssh/id\n{key}\n+ done",
                    "no-end": "\n".join(lines[:5]),
                    "no-begin": "\n".join(lines[3:]) + "\n+ systemctl restart app",
                    "json": '{"private_key": "' + key.replace("\n", "\\n") + '"}'}[cut]
            kept = [line for line in body if line in text]
            out.append(Sample("private-key", text, tuple(kept)))
    return out


def ordinary_lines(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]
