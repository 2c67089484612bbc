"""The planner's parts; ``sipfleet.operator.planner.plan`` is the entry point."""
