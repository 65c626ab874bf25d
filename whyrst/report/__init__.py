"""Report writers: terminal (rich), JSON, Zeek conn.log, HTML."""
