"""The fleet report (``bosky fleet``): one report, two engines that build it.

- :mod:`.report` is the report itself: which boots count, how a boot's
  events collapse into one, the group table, the failing modules and the
  latest failures, kept in bounded memory however many verdicts are read.
- :mod:`.scan` reads the log group with FilterLogEvents and feeds the report.
- :mod:`.insights` asks CloudWatch Logs Insights the same questions, so the
  aggregation runs on AWS's side and only the answers travel.

Nothing here is imported by the boot path: botocore is imported only where
a request is sent.
"""
