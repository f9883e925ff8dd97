"""The command's tools: the `bosky` CLI, doctor, install and the IAM policy."""
