"""The endpoint state table and Zeek's conn_state summary."""

from whyrst.tcp.state import EP, Segment, conn_state, transition


def seg(**kw):
    base = dict(syn=False, ack=False, fin=False, rst=False, payload=0, is_orig=True)
    base.update(kw)
    return Segment(**base)


def test_handshake_moves_both_sides_to_established():
    step = transition(seg(syn=True), EP.INACTIVE, EP.INACTIVE)
    assert step.me == EP.SYN_SENT
    step = transition(seg(syn=True, ack=True, is_orig=False), EP.INACTIVE, EP.SYN_SENT)
    assert (step.me, step.peer) == (EP.ESTABLISHED, EP.ESTABLISHED)


def test_refusal_is_a_reject():
    step = transition(seg(rst=True, ack=True, is_orig=False), EP.INACTIVE, EP.SYN_SENT)
    assert step.me == EP.RESET and step.reject and step.close


def test_midstream_ack_is_partial_unless_synack_seen():
    assert transition(seg(ack=True, payload=10), EP.INACTIVE, EP.INACTIVE).me == EP.PARTIAL
    assert transition(seg(ack=True), EP.INACTIVE, EP.ESTABLISHED).me == EP.ESTABLISHED


def test_reversed_syn_flips_roles():
    step = transition(seg(syn=True, is_orig=False), EP.INACTIVE, EP.SYN_ACK_SENT)
    assert step.flip and step.peer == EP.ESTABLISHED


def test_rst_after_close_is_ignored_when_peer_closed():
    assert transition(seg(rst=True), EP.CLOSED, EP.CLOSED).me == EP.CLOSED
    assert transition(seg(rst=True), EP.CLOSED, EP.ESTABLISHED).me == EP.RESET


def test_conn_state_table():
    assert conn_state(EP.SYN_SENT, EP.INACTIVE, 0, 0, "S") == "S0"
    assert conn_state(EP.SYN_SENT, EP.RESET, 0, 0, "Sr") == "REJ"
    assert conn_state(EP.CLOSED, EP.CLOSED, 10, 10, "ShAdDaFf") == "SF"
    assert conn_state(EP.RESET, EP.INACTIVE, 0, 0, "SR") == "RSTOS0"
    assert conn_state(EP.RESET, EP.INACTIVE, 0, 0, "R") == "OTH"
    assert conn_state(EP.RESET, EP.ESTABLISHED, 5, 5, "ShADadR") == "RSTO"
    assert conn_state(EP.ESTABLISHED, EP.RESET, 5, 5, "ShADadr") == "RSTR"
    assert conn_state(EP.PARTIAL, EP.RESET, 5, 0, "Dr") == "RSTRH"
    assert conn_state(EP.ESTABLISHED, EP.ESTABLISHED, 1, 1, "ShADad") == "S1"
    assert conn_state(EP.CLOSED, EP.INACTIVE, 0, 0, "SF") == "SH"
    assert conn_state(EP.PARTIAL, EP.CLOSED, 0, 0, "^fA") == "SHR"


def test_remembered_steps_equal_the_table():
    """step_for (the tracker's) gives transition's outcome for every combination of control bits,
    direction and states, whatever the payload length and sequence numbers."""
    import itertools
    import random

    from whyrst.tcp.state import step_for

    rng = random.Random(5)
    for syn, ack, fin, rst, is_orig in itertools.product((False, True), repeat=5):
        for me, peer in itertools.product(EP, repeat=2):
            for payload in (0, 1, 1460, 65535):
                want = transition(Segment(syn, ack, fin, rst, payload, is_orig, rng.randrange(2**32),
                                          rng.randrange(2**32)), me, peer)
                assert step_for(syn, ack, fin, rst, payload != 0, is_orig, me, peer) == want
