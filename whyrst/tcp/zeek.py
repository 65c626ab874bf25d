"""Zeek's defaults that decide where one connection ends and the next begins, and who is the server.

Values are Zeek's script-level defaults (``init-bare.zeek``); the port set is the union of the
``likely_server_ports`` that Zeek's default protocol scripts add, used only when a connection is
first seen without a SYN (or with a SYN-ACK) to guess which side is the server.
"""

from __future__ import annotations

TOO_LARGE_SEQ_DELTA = 1_048_576
SYN_TIMEOUT = 5.0  # tcp_SYN_timeout: first expiry check
SESSION_TIMER = 6.0  # tcp_session_timer: later expiry checks
CONNECTION_LINGER = 5.0  # tcp_connection_linger
CLOSE_DELAY = 5.0  # tcp_close_delay: removal after both sides closed or one reset
ATTEMPT_DELAY = 5.0  # tcp_attempt_delay: an unanswered SYN ends the attempt
INACTIVITY_HANDSHAKE = 60.0  # inactivity before the handshake completes (udp_inactivity_timeout)
INACTIVITY_TIMEOUT = 300.0  # tcp_inactivity_timeout

LIKELY_SERVER_PORTS: frozenset[int] = frozenset(
    {
        21, 2811,  # ftp
        22,  # ssh
        23,  # telnet
        25, 587,  # smtp
        53,  # dns
        80, 81, 631, 1080, 3128, 8000, 8080, 8888,  # http
        88,  # kerberos
        110, 143,  # pop3, imap
        135, 139, 445,  # dce-rpc, smb
        389, 3268,  # ldap
        443, 563, 585, 614, 636, 989, 990, 992, 993, 995, 5223,  # ssl/tls
        502,  # modbus
        1883,  # mqtt
        3306,  # mysql
        3389,  # rdp
        5222, 5269,  # xmpp
        5432,  # postgresql
        5900, 5901, 5902, 5903, 5904, 5905, 5906, 5907,  # rfb
        6379,  # redis
        6666, 6667, 6668, 6669,  # irc
        20000,  # dnp3
    }
)


def likely_server_port(port: int) -> bool:
    return port in LIKELY_SERVER_PORTS
