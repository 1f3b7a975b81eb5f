"""The stream processors: deciders, projections, sinks and reactors, run as Faust workers."""
