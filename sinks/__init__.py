"""Where rows end up, behind one contract (:class:`sinks.base.Sink`)."""
