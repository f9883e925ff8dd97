"""AWS-side test support for bosky: a local EventBridge emulator and a fault proxy.

Nothing here talks to real AWS: every endpoint is on 127.0.0.1.

- :mod:`tests.support.emulator` runs moto's server and builds SQS-backed consumers
  that see exactly what an EventBridge rule would deliver.
- :mod:`tests.support.faultproxy` sits between a client and the emulator and
  injects the failures a real network and the real EventBridge produce.
- :mod:`tests.support.fixtures` is a pytest plugin exposing both as fixtures.
"""
