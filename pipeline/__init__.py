"""rollcall's core: settings, tap records, topics and the Faust app."""
