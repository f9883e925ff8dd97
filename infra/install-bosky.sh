#!/bin/bash
# Bake bosky into an image: install it into the Python that runs cloud-init,
# register the module (bosky install) and check the result (bosky doctor).
#
# Used as is by infra/packer-provisioner.pkr.hcl; infra/image-builder-component.yaml
# inlines the same body (tests/test_infra.py keeps the two identical).
#
# Environment:
#   BAKE_STEP           install (default) or doctor
#   BAKE_PROJECT        install: the event Source (bosky's project), required
#   BAKE_EVENT_BUS      install: event bus name or ARN (default: default)
#   BAKE_BOSKY_PACKAGE  install: a file of bosky's release copied onto the machine,
#                       required: bosky_VERSION_all.deb (apt), bosky-VERSION-1.noarch.rpm
#                       (dnf) or bosky-VERSION-py3-none-any.whl (pip). Never a name:
#                       no index carries bosky, and whoever registers the name there
#                       would run as root on every image.
#   BAKE_BOSKY_SHA256   install: that file's SHA-256 from the release's SHA256SUMS,
#                       required; a file that does not match is not installed
#   BAKE_DOCTOR_ARGS    doctor: extra arguments, e.g. --image on a build instance
set -euo pipefail

step="${BAKE_STEP:-install}"

# cloud-init imports cc_bosky with the interpreter its own script names, so
# that interpreter is where bosky must be installed.
cloud_init="$(command -v cloud-init || true)"
if [ -z "$cloud_init" ]; then
  echo "bosky: cloud-init is not installed on this machine" >&2
  exit 1
fi
read -r shebang < "$cloud_init"
read -r python _ <<< "${shebang#\#!}"
case "$python" in
  */env) python="$(command -v python3)" ;;
esac

ensure_pip() {
  if ! "$python" -m pip --version > /dev/null 2>&1; then
    system_packages python3-pip
  fi
}

system_packages() {
  if command -v apt-get > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
  elif command -v dnf > /dev/null; then
    dnf install -y -q "$@"
  else
    yum install -y -q "$@"
  fi
}

# botocore and PyYAML, by the names of the machine's package manager.
library_packages() {
  if command -v apt-get > /dev/null; then
    system_packages python3-botocore python3-yaml
  else
    system_packages python3-botocore python3-pyyaml
  fi
}

install_bosky() {
  local project="${BAKE_PROJECT:?set BAKE_PROJECT to the event Source (bosky project)}"
  local package="${BAKE_BOSKY_PACKAGE:?set BAKE_BOSKY_PACKAGE to a bosky .deb, .rpm or .whl file on this machine}"
  local want="${BAKE_BOSKY_SHA256:?set BAKE_BOSKY_SHA256 to the SHA-256 of that file in the release SHA256SUMS}"
  if [ ! -f "$package" ]; then
    echo "bosky: $package is not a file on this machine: copy bosky's .deb, .rpm or .whl" \
      "here (no package index carries bosky, so none is asked for it)" >&2
    exit 2
  fi
  # The check and the install read the same bytes: a private copy.
  local got
  copy_dir="$(mktemp -d)"
  trap 'rm -rf "$copy_dir"' EXIT
  cp -- "$package" "$copy_dir/"
  package="$copy_dir/$(basename -- "$package")"
  got="$(sha256sum -- "$package" | cut -d' ' -f1)"
  if [ "$got" != "$(printf '%s' "$want" | tr 'A-F' 'a-f')" ]; then
    echo "bosky: $(basename -- "$package") has SHA-256 $got, not BAKE_BOSKY_SHA256 $want:" \
      "not installing it" >&2
    exit 1
  fi
  case "$package" in
    *.deb)
      # Debian's and Ubuntu's route: dist-packages, python3-botocore and python3-yaml from apt.
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package"
      ;;
    *.rpm)
      # Amazon Linux 2023 and RHEL 9: python3-botocore and python3-pyyaml from dnf.
      if command -v dnf > /dev/null; then dnf install -y -q "$package"; else yum install -y -q "$package"; fi
      ;;
    *.whl)
      # botocore and PyYAML come from the distribution's packages and pip adds
      # bosky alone (--no-deps), so nothing the distribution installed is
      # replaced; pip checks the hash again as it reads the wheel.
      library_packages
      ensure_pip
      local flags=(--no-cache-dir --no-deps --no-index --require-hashes)
      if "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
      then
        flags+=(--break-system-packages)  # PEP 668: a .deb avoids pip altogether
      fi
      printf '%s --hash=sha256:%s\n' "$package" "$got" > "$copy_dir/requirements.txt"
      "$python" -m pip install "${flags[@]}" -r "$copy_dir/requirements.txt"
      ;;
    *)
      echo "bosky: $package is not a .deb, .rpm or .whl" >&2
      exit 2
      ;;
  esac
  "$python" -m cc_bosky install --config --project "$project" \
    --event-bus "${BAKE_EVENT_BUS:-default}"
}

case "$step" in
  install)
    install_bosky
    ;;
  doctor)
    # shellcheck disable=SC2086  # BAKE_DOCTOR_ARGS is a list of words
    "$python" -m cc_bosky doctor ${BAKE_DOCTOR_ARGS:-}
    ;;
  *)
    echo "bosky: BAKE_STEP must be install or doctor, not '$step'" >&2
    exit 2
    ;;
esac
