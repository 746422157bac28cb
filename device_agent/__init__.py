"""edgeprune device agent: measures .tflite variants on the device itself.

The agent is copied to Raspberry Pis (or other edge boards) as a bare folder
and run with ``python3 -m device_agent``.  It therefore depends on nothing but
the standard library, numpy and one TFLite interpreter, uses only relative
imports, and must keep working on Python 3.9 (Raspberry Pi OS Bullseye).
"""

__version__ = "0.1.0"

# Bumped whenever the JSON document changes incompatibly; the host refuses
# documents whose schema_version it does not know.
SCHEMA_VERSION = 1

# The plan protocol (``python3 -m device_agent plan``): the plan_version of the plans this agent runs, and the
# schema_version of the document it prints for one (schemas/agent-plan.schema.json,
# schemas/agent-plan-result.schema.json). The host refuses an agent that does not speak them.
PLAN_VERSION = 1
PLAN_SCHEMA_VERSION = 2
