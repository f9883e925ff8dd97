# Packer: bake bosky into an image built from any EC2 source.
#
# Copy this file next to install-bosky.sh into your Packer template directory,
# point "sources" at your own source block, and build with
#   packer build -var bosky_project=my-fleet -var bosky_package=dist/bosky_0.1.0_all.deb \
#     -var bosky_sha256=<its line in dist/SHA256SUMS> .
# The file provisioner uploads the package; the first shell provisioner checks
# its SHA-256, installs it into the Python that runs cloud-init
# and registers the module ('bosky install --config'); the second checks the
# image with 'bosky doctor --image' (the build instance's own credentials and
# network are not the future instances', so those checks are left out).

variable "bosky_project" {
  type        = string
  description = "bosky's project: the Source of its events (as in infra/consumer.yaml)."
}

variable "bosky_event_bus" {
  type        = string
  default     = "default"
  description = "Event bus name or ARN the instances send to."
}

variable "bosky_package" {
  type        = string
  description = "A file of bosky's release on this machine (bosky_VERSION_all.deb, bosky-VERSION-1.noarch.rpm or the wheel): the file provisioner uploads it. Never a package name."
}

variable "bosky_sha256" {
  type        = string
  description = "That file's SHA-256, from the release's SHA256SUMS; a file that does not match is not installed."
}

build {
  sources = ["source.amazon-ebs.base"]

  provisioner "file" {
    source      = var.bosky_package
    destination = "/tmp/${basename(var.bosky_package)}"
  }

  provisioner "shell" {
    script          = "${path.root}/install-bosky.sh"
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKE_STEP=install",
      "BAKE_PROJECT=${var.bosky_project}",
      "BAKE_EVENT_BUS=${var.bosky_event_bus}",
      "BAKE_BOSKY_PACKAGE=/tmp/${basename(var.bosky_package)}",
      "BAKE_BOSKY_SHA256=${var.bosky_sha256}",
    ]
  }

  provisioner "shell" {
    script          = "${path.root}/install-bosky.sh"
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKE_STEP=doctor",
      "BAKE_DOCTOR_ARGS=--image",
    ]
  }
}
