"""The layers bosky's settings come from, each read and checked against the one schema.

A YAML file (``/etc/bosky/config.yaml``), the environment, the cloud-config
stanza and the command's flags are each a mapping of schema keys; this module
reads them and tells the valid keys from the bad ones. It holds no
:class:`~cc_bosky.config.Settings`, so cloud-init's stage, which only checks
the layers and hands them to the reporter, can import it cheaply.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from . import schemas, validation
from .errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/bosky/config.yaml"

# Environment variables other tools already use for the same setting, after
# bosky's own BOSKY_<KEY>, in order of precedence.
_ENV_ALIASES: Dict[str, Tuple[str, ...]] = {
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    # botocore's own name for EventBridge's endpoint variable is
    # AWS_ENDPOINT_URL_EVENTBRIDGE (from its service id); _EVENTS is accepted
    # too because it is what people write.
    "endpoint_url": ("AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_ENDPOINT_URL_EVENTS", "AWS_ENDPOINT_URL"),
    "autoscaling_endpoint_url": ("AWS_ENDPOINT_URL_AUTO_SCALING", "AWS_ENDPOINT_URL"),
    "cloudformation_endpoint_url": ("AWS_ENDPOINT_URL_CLOUDFORMATION", "AWS_ENDPOINT_URL"),
}


def schema() -> Dict[str, Any]:
    return schemas.load("config")


def keys() -> List[str]:
    return list(schema()["properties"])


def problems(mapping: Any, origin: str) -> List[str]:
    """Schema problems in ``mapping``, each prefixed by where it came from."""
    return [f"{origin}: {msg}" for msg in validation.errors(mapping, schema())]


def read_file(path: str, required: bool) -> Dict[str, Any]:
    """The mapping in a YAML config file; {} when an optional file is absent."""
    try:
        with open(path, "rb") as f:
            raw = f.read(1024 * 1024 + 1)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except ValueError:  # a NUL or an unencodable character in the path
        raise ConfigError(f"cannot read config file {path!r}: not a valid path") from None
    if len(raw) > 1024 * 1024:
        raise ConfigError(f"config file {path} is larger than 1 MiB")
    return parse_yaml(raw, path)


#: What a YAML document may hold once its aliases are expanded, and how deep
#: it may nest: cloud-configs hold hundreds of values a few levels deep. An
#: alias bomb ("billion laughs") loads as a few shared objects, and only
#: what walks it (the schema check, printing) would blow up; it stops here.
YAML_MAX_NODES = 100_000
YAML_MAX_DEPTH = 100


class RefusedYaml(ConfigError):
    """A document past those bounds: not read at all (what cloud-init would
    make of it is not known)."""


def load_yaml(raw: bytes, origin: str) -> Any:
    """The one YAML document in ``raw`` (safe types only), or ConfigError in
    one line: not YAML, more than :data:`YAML_MAX_NODES` values with its
    aliases expanded, nested deeper than :data:`YAML_MAX_DEPTH`, or an alias
    to itself."""
    import yaml  # only when there is a file to read

    class Loader(yaml.SafeLoader):
        depth = nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1  # the composer recurses: stop before Python's own limit
            self.nodes += 1  # and a long document stops before it is all composed
            if self.depth > YAML_MAX_DEPTH:
                raise RefusedYaml(f"{origin}: refused: nested more than {YAML_MAX_DEPTH} "
                                  "levels deep")
            if self.nodes > YAML_MAX_NODES:
                raise RefusedYaml(f"{origin}: refused: more than {YAML_MAX_NODES} values")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = None
    try:
        loader = Loader(raw)  # reads the first bytes: a NUL is a ReaderError here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_size(node, origin)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{origin}: not valid YAML{where}") from None
    except (ValueError, RecursionError):  # PyYAML composes recursively
        raise ConfigError(f"{origin}: not valid YAML (nested too deep?)") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_size(root: Any, origin: str) -> None:
    """Count ``root``'s nodes as if every alias were a copy, without making
    one: each node's expanded size and height are worked out once (a walk
    linear in the document, not in its expansion)."""
    size: Dict[int, int] = {}
    height: Dict[int, int] = {}
    path = {id(root)}
    stack = [(root, 1, iter(_yaml_children(root)), [1, 0])]  # node, depth, children, [size, h]
    while stack:
        node, depth, children, acc = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            path.discard(id(node))
            size[id(node)], height[id(node)] = acc[0], acc[1] + 1
            if stack:
                stack[-1][3][0] += acc[0]
                stack[-1][3][1] = max(stack[-1][3][1], acc[1] + 1)
        elif id(child) in size:
            acc[0] += size[id(child)]
            acc[1] = max(acc[1], height[id(child)])
        elif id(child) in path:
            raise RefusedYaml(f"{origin}: refused: a YAML alias refers to a value that "
                              "contains it")
        else:
            path.add(id(child))
            stack.append((child, depth + 1, iter(_yaml_children(child)), [1, 0]))
            continue
        if stack and stack[-1][3][0] > YAML_MAX_NODES:
            raise RefusedYaml(f"{origin}: refused: more than {YAML_MAX_NODES} values once its "
                              "YAML aliases are expanded (an alias bomb?)")
        if stack and stack[-1][1] + stack[-1][3][1] > YAML_MAX_DEPTH:
            raise RefusedYaml(f"{origin}: refused: nested more than {YAML_MAX_DEPTH} levels deep")


def _yaml_children(node: Any) -> List[Any]:
    value = node.value
    if not isinstance(value, list):
        return []  # a scalar
    if value and isinstance(value[0], tuple):  # a mapping: (key, value) pairs
        return [n for pair in value for n in pair]
    return value


def parse_yaml(raw: bytes, origin: str) -> Dict[str, Any]:
    data = load_yaml(raw, origin)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of keys, got {type(data).__name__}")
    return data


def checked(mapping: Mapping[str, Any], origin: str) -> Mapping[str, Any]:
    """``mapping`` itself, or ConfigError naming every bad key."""
    found = problems(mapping, origin)
    if found:
        raise ConfigError("; ".join(found))
    return mapping


def lenient(mapping: Any, origin: str) -> Tuple[Dict[str, Any], List[str]]:
    """The valid keys of ``mapping`` and a message per key left out.

    At boot a typo must not cost the verdict: the reporter goes on with what
    is valid, and the module logs what it dropped.
    """
    if not isinstance(mapping, dict):
        return {}, problems(mapping, origin)
    good: Dict[str, Any] = {}
    bad: List[str] = []
    for key, value in mapping.items():
        found = problems({key: value}, origin)
        if found:
            bad += found
        else:
            good[key] = value
    return good, bad


def from_env(environ: Mapping[str, str]) -> Dict[str, Any]:
    """Settings given as BOSKY_<KEY> (and the usual AWS_* names), typed per the schema."""
    props = schema()["properties"]
    found: Dict[str, Any] = {}
    for key, spec in props.items():
        names = (f"BOSKY_{key.upper()}", *_ENV_ALIASES.get(key, ()))
        for name in names:
            raw = environ.get(name)
            if raw:
                found[key] = _coerce(raw, spec, name)
                break
    return found


#: BOSKY_ variables that are not settings but are bosky's all the same.
_OTHER_ENV = ("BOSKY_CONFIG", "BOSKY_INSTANCE_ID")


def env_typos(environ: Mapping[str, str]) -> List[str]:
    """A warning for each BOSKY_ variable that is no setting but close to one
    (``BOSKY_DEADLIN``): the environment has no schema to reject it."""
    names = [f"BOSKY_{key.upper()}" for key in keys()]
    found = []
    for name in environ:
        if name.startswith("BOSKY_") and name not in names and name not in _OTHER_ENV:
            hint = validation.did_you_mean(name, names)
            if hint:
                found.append(f"environment: {name} is not a setting (ignored){hint}")
    return found


def _coerce(raw: str, spec: Mapping[str, Any], name: str) -> Any:
    kind = spec.get("type")
    boolean = kind == "boolean" or (isinstance(kind, list) and "boolean" in kind)
    if boolean and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a {kind}") from None
    if kind == "array":
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def default(key: str) -> Any:
    """The schema's default for ``key``."""
    return schema()["properties"][key].get("default")
