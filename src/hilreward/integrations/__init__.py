"""hilreward in other frameworks' loops: :mod:`hilreward.integrations.lerobot` (LeRobot's HIL-SERL processors)."""
