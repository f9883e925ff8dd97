# An Auto Scaling group whose instances report their own boot with bosky, as
# infra/asg-example.yaml: a launch lifecycle hook holds each new instance in
# Pending:Wait until bosky completes it (CONTINUE on a clean boot, ABANDON on
# a failed or timed-out one, so the group replaces it). The user data is
# built by the cloudinit provider's cloudinit_config. The image must have
# cloud-init and bosky installed (infra/install-bosky.sh); the instance
# profile is ../instance-role with auto_scaling_group_name set to this group.
# Terraform has no CreationPolicy, so the stack signal (cfn_signal) is off.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
    cloudinit = {
      source  = "hashicorp/cloudinit"
      version = ">= 2.3"
    }
  }
}

variable "project" {
  type    = string
  default = "web"
}

variable "image_id" {
  type        = string
  description = "An image with cloud-init and bosky installed."
}

variable "instance_type" {
  type    = string
  default = "t3.micro"
}

variable "subnet_ids" {
  type = list(string)
}

variable "group_name" {
  type        = string
  default     = "bosky-web"
  description = "Named, so the instance role can be limited to it before it exists."
}

module "role" {
  source                  = "../instance-role"
  project                 = var.project
  auto_scaling_group_name = var.group_name
}

data "cloudinit_config" "web" {
  gzip          = false
  base64_encode = true
  part {
    content_type = "text/cloud-config"
    content = yamlencode({
      bosky = {
        project        = var.project
        lifecycle_hook = "boot-check"
      }
      runcmd = [["sh", "-c", "echo 'deploying the application'"]]
    })
  }
}

resource "aws_launch_template" "web" {
  name_prefix   = "bosky-web-"
  image_id      = var.image_id
  instance_type = var.instance_type
  user_data     = data.cloudinit_config.web.rendered
  iam_instance_profile {
    arn = module.role.instance_profile_arn
  }
  metadata_options {
    http_tokens = "required"
    # bosky reads the group from the instance's tags without a call.
    instance_metadata_tags = "enabled"
  }
}

resource "aws_autoscaling_group" "web" {
  name                = var.group_name
  min_size            = 1
  max_size            = 2
  desired_capacity    = 1
  vpc_zone_identifier = var.subnet_ids
  launch_template {
    id      = aws_launch_template.web.id
    version = aws_launch_template.web.latest_version
  }
  initial_lifecycle_hook {
    name                 = "boot-check"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
    # Longer than bosky's deadline (30 minutes by default): bosky answers
    # first, with ABANDON at the deadline if the boot hangs.
    heartbeat_timeout = 2400
    default_result    = "ABANDON"
  }
}

output "group_name" {
  value = aws_autoscaling_group.web.name
}
