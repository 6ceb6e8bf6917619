"""Process fixtures for the wire tests: the daemon and sipp, started and stopped by the test."""
