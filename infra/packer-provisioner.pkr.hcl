# Packer: bake bosky into an image built from any EC2 source.
#
# Copy this file next to install-bosky.sh into your Packer template directory,
# point "sources" at your own source block, and build with
#   packer build -var bosky_project=my-fleet .
# The first provisioner installs bosky into the Python that runs cloud-init
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
  default     = "bosky"
  description = "bosky's package: a pip requirement (e.g. bosky==0.1.0), or a wheel or bosky_VERSION_all.deb file copied onto the machine."
}

build {
  sources = ["source.amazon-ebs.base"]

  provisioner "shell" {
    script          = "${path.root}/install-bosky.sh"
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "BAKE_STEP=install",
      "BAKE_PROJECT=${var.bosky_project}",
      "BAKE_EVENT_BUS=${var.bosky_event_bus}",
      "BAKE_BOSKY_PACKAGE=${var.bosky_package}",
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
