"""Files a run reads and writes: the CSV source, the report (sinks, reader, resume), the report's
meta file and lock, the before-state journal, and the compact key index they share."""
