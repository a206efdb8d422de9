"""rpclab.grpcstack.tls and rpclab.grpcstack.interceptors against real gRPC servers: TLS, token
auth, call logs, message limits, compression."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from rpclab import faults
from rpclab.grpcstack import tls
from rpclab.grpcstack.greeter import helloworld_pb2, helloworld_pb2_grpc
from rpclab.grpcstack.interceptors import CallLog, TokenAuth, bearer_token
from rpclab.grpcstack.kv_service import kv_pb2, kv_pb2_grpc
from rpclab.grpcstack.services import add_greeter, add_kv, add_reflection
from rpclab.runtime import background

TOKEN = "let-me-in"


@pytest.fixture(scope="module")
def ca() -> tls.KeyPair:
    return tls.make_ca("Test CA")


@pytest.fixture(scope="module")
def server_pair(ca: tls.KeyPair) -> tls.KeyPair:
    return tls.make_server_cert(ca, hostnames=("localhost", "127.0.0.1"))


def _hello(channel: grpc.Channel, name: str = "Ada", **kwargs) -> str:
    return (
        helloworld_pb2_grpc.GreeterStub(channel)
        .SayHello(helloworld_pb2.HelloRequest(name=name), timeout=2, **kwargs)
        .message
    )


def _tls_server(
    pair: tls.KeyPair, *interceptors, name: str = "test-tls"
) -> background.ServerHandle:
    def register(server: grpc.Server) -> None:
        add_greeter(server)
        add_reflection(server)

    return background.serve_grpc(
        name,
        register,
        interceptors=interceptors,
        credentials=grpc.ssl_server_credentials([(pair.key_pem, pair.cert_pem)]),
    )


# --------------------------------------------------------------------------- certificates


def test_ca_and_server_certificates_say_who_they_are(ca, server_pair):
    ca_info, server_info = tls.describe(ca), tls.describe(server_pair.cert_pem)
    assert ca_info.is_ca and ca_info.subject == ca_info.issuer == "CN=Test CA"
    assert not server_info.is_ca and server_info.issuer == "CN=Test CA"
    assert server_info.hostnames == ("localhost", "127.0.0.1")
    assert server_info.not_before <= dt.datetime.now(dt.UTC) < server_info.not_after
    assert (
        b"BEGIN PRIVATE KEY" in server_pair.key_pem and b"BEGIN CERTIFICATE" in server_pair.cert_pem
    )
    assert "PRIVATE" not in repr(server_pair) and "CN=localhost" in repr(server_pair)
    assert "self-signed" in str(ca_info) and "for hosts: localhost, 127.0.0.1" in str(server_info)


def test_certificate_helpers_refuse_bad_input(ca, server_pair):
    with pytest.raises(ValueError, match="at least one hostname"):
        tls.make_server_cert(ca, hostnames=())
    with pytest.raises(ValueError, match="days must be"):
        tls.make_ca(days=0)
    with pytest.raises(ValueError, match="not a certificate authority"):
        tls.make_server_cert(server_pair)  # a server's certificate cannot sign others
    with pytest.raises(ValueError, match="not a PEM certificate"):
        tls.describe(b"hello")
    assert tls.describe(tls.make_server_cert(ca, hostnames="only.example")).hostnames == (
        "only.example",
    )


def test_client_certificate_is_for_client_auth(ca):
    info = tls.describe(tls.make_client_cert(ca, "alice"))
    assert info.subject == "CN=alice" and info.hostnames == () and not info.is_ca


# --------------------------------------------------------------------------- TLS


def test_tls_call_succeeds_with_the_right_ca_and_fails_with_the_wrong_one(ca, server_pair):
    calls = CallLog()
    with _tls_server(server_pair, calls) as server:
        with grpc.secure_channel(
            f"127.0.0.1:{server.port}", grpc.ssl_channel_credentials(ca.cert_pem)
        ) as channel:
            assert _hello(channel) == "Hello, Ada!"
        stranger = tls.make_ca("Some Other CA")
        with grpc.secure_channel(
            f"127.0.0.1:{server.port}", grpc.ssl_channel_credentials(stranger.cert_pem)
        ) as channel:
            with pytest.raises(grpc.RpcError) as failed:
                _hello(channel)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(
            f"127.0.0.1:{server.port}"
        ) as channel:  # plain text to a TLS port
            with pytest.raises(grpc.RpcError) as plain:
                _hello(channel)
        assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    assert [r.code for r in calls.records] == ["OK"]  # the refused handshakes never became calls


def test_tls_checks_the_hostname_in_the_certificate(ca):
    elsewhere = tls.make_server_cert(ca, hostnames=("db.example.test",))
    with _tls_server(elsewhere) as server:
        with grpc.secure_channel(
            f"127.0.0.1:{server.port}", grpc.ssl_channel_credentials(ca.cert_pem)
        ) as channel:
            with pytest.raises(grpc.RpcError) as failed:
                _hello(channel)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
        override = (("grpc.ssl_target_name_override", "db.example.test"),)
        with grpc.secure_channel(
            f"127.0.0.1:{server.port}", grpc.ssl_channel_credentials(ca.cert_pem), options=override
        ) as channel:
            assert _hello(channel) == "Hello, Ada!"


# --------------------------------------------------------------------------- tokens


def test_bearer_token_is_read_from_metadata():
    assert bearer_token([("x", "y"), ("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([]) is None and bearer_token(None) is None
    with pytest.raises(ValueError, match="Bearer <token>"):
        bearer_token([("authorization", "Basic dXNlcjpwYXNz")])
    with pytest.raises(ValueError, match="limit"):
        bearer_token([("authorization", "Bearer " + "x" * 5000)])


def test_token_auth_refuses_calls_without_a_valid_token(ca, server_pair):
    calls, auth = CallLog(), TokenAuth({TOKEN: "alice"})
    with _tls_server(server_pair, calls, auth) as server:
        target = f"127.0.0.1:{server.port}"
        tls_only = grpc.ssl_channel_credentials(ca.cert_pem)
        with grpc.secure_channel(target, tls_only) as channel:
            with pytest.raises(grpc.RpcError) as missing:
                _hello(channel)
            with pytest.raises(grpc.RpcError) as wrong:
                _hello(channel, metadata=[("authorization", "Bearer guess")])
            with pytest.raises(grpc.RpcError) as streamed:
                list(
                    helloworld_pb2_grpc.GreeterStub(channel).SayHelloStreamReply(
                        helloworld_pb2.HelloRequest(name="x"), timeout=2
                    )
                )
            with pytest.raises(
                grpc.RpcError
            ) as no_such_method:  # nor may it learn which methods exist
                channel.unary_unary("/helloworld.Greeter/NoSuchMethod")(b"", timeout=2)
        assert (
            missing.value.code()
            is wrong.value.code()
            is streamed.value.code()
            is grpc.StatusCode.UNAUTHENTICATED
        )
        assert no_such_method.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "needs a token" in missing.value.details() and "not valid" in wrong.value.details()
        with_token = grpc.composite_channel_credentials(
            tls_only, grpc.access_token_call_credentials(TOKEN)
        )
        with grpc.secure_channel(target, with_token) as channel:
            assert _hello(channel) == "Hello, Ada!"
            with pytest.raises(grpc.RpcError) as no_such_method:
                channel.unary_unary("/helloworld.Greeter/NoSuchMethod")(b"", timeout=2)
            assert (
                no_such_method.value.code() is grpc.StatusCode.UNIMPLEMENTED
            )  # with a token, it may
    assert auth.allowed == {"alice": 2}
    assert [r.code for r in calls.records] == ["UNAUTHENTICATED"] * 4 + ["OK", "UNIMPLEMENTED"]


def test_token_auth_checks_its_tokens_and_exempts_nothing_unless_told():
    with pytest.raises(ValueError, match="at least one token"):
        TokenAuth([])
    with pytest.raises(ValueError, match="non-empty str"):
        TokenAuth([" spaced "])
    auth = TokenAuth(["t1", "t2"])
    assert auth.check([("authorization", "Bearer t2")]) == "holder of token 2"
    with pytest.raises(PermissionError, match="not valid"):
        auth.check([("authorization", "Bearer t3")])
    assert auth.holder([("authorization", "Bearer t3")]) is None
    assert auth.exempt == ()
    assert TokenAuth(["t1"], exempt="/grpc.health.").exempt == ("/grpc.health.",)


# --------------------------------------------------------------------------- the call log


def test_call_log_records_method_kind_status_and_is_bounded():
    calls = CallLog(max_records=3)
    with background.serve_grpc(
        "test-log", lambda s: (add_greeter(s), add_kv(s)), interceptors=[calls]
    ) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            kv = kv_pb2_grpc.KVStub(channel)
            with pytest.raises(grpc.RpcError):
                kv.Get(kv_pb2.GetRequest(key="missing"), timeout=2)
            list(
                helloworld_pb2_grpc.GreeterStub(channel).SayHelloStreamReply(
                    helloworld_pb2.HelloRequest(name="x"), timeout=2
                )
            )
            kv.Put(kv_pb2.PutRequest(key="k", value="v"), timeout=2)
            with pytest.raises(grpc.RpcError):
                kv.Get(kv_pb2.GetRequest(key=""), timeout=2)
            with pytest.raises(grpc.RpcError) as unknown:
                channel.unary_unary("/no.Such/Method")(b"", timeout=2)
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    records = calls.records
    assert len(calls) == 3  # bounded: the oldest two were forgotten
    assert [(r.method, r.kind, r.code) for r in records] == [
        ("/rpclab.kv.KV/Put", "unary", "OK"),
        ("/rpclab.kv.KV/Get", "unary", "INVALID_ARGUMENT"),
        ("/no.Such/Method", "", "UNIMPLEMENTED"),
    ]
    assert all(r.seconds >= 0 for r in records) and records[0].peer.startswith("ipv4:127.0.0.1:")
    table = calls.table()
    assert table.splitlines()[0].split() == ["#", "method", "kind", "status", "ms"]
    assert "INVALID_ARGUMENT" in table and len(table.splitlines()) == 5
    calls.clear()
    assert calls.table() == "(no calls yet)"
    with pytest.raises(ValueError):
        CallLog(max_records=0)


def test_call_log_sees_the_end_of_a_stream():
    calls = CallLog()
    with background.serve_grpc("test-log", add_greeter, interceptors=[calls]) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            replies = list(
                helloworld_pb2_grpc.GreeterStub(channel).SayHelloStreamReply(
                    helloworld_pb2.HelloRequest(name="x"), timeout=2
                )
            )
    assert len(replies) == 3
    assert [(r.kind, r.code) for r in calls.records] == [("server streaming", "OK")]


# --------------------------------------------------------------------------- limits and compression


def test_a_request_over_the_servers_limit_is_resource_exhausted():
    limit = 1024
    with background.serve_grpc(
        "test-limit", add_greeter, options=[("grpc.max_receive_message_length", limit)]
    ) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert _hello(channel, "x" * 500) == "Hello, " + "x" * 500 + "!"
            with pytest.raises(grpc.RpcError) as too_big:
                _hello(channel, "x" * 2000)
    assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(limit) in too_big.value.details()


def test_gzip_shrinks_a_compressible_request_on_the_wire():
    sizes = {}
    with background.serve_grpc("test-gzip", add_greeter) as server:
        proxy = faults.serve_proxy("test-gzip-proxy", server, mode="bytes")
        try:
            for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
                with grpc.insecure_channel(
                    f"127.0.0.1:{proxy.port}", compression=compression
                ) as channel:
                    _hello(channel, "warm up")
                    proxy.reset_stats()
                    _hello(channel, "all work and no play " * 2000)
                    sizes[compression] = proxy.stats.request.bytes
        finally:
            proxy.stop()
    assert sizes[grpc.Compression.NoCompression] > 40_000
    assert sizes[grpc.Compression.Gzip] < sizes[grpc.Compression.NoCompression] / 10


def test_token_calls_leave_no_thread_in_the_census(ca, server_pair):
    """Call credentials run on gRPC's C threads; those are not threads the census should count."""
    from rpclab.runtime import process

    with _tls_server(server_pair, TokenAuth([TOKEN])) as server:
        credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(ca.cert_pem), grpc.access_token_call_credentials(TOKEN)
        )
        with grpc.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
            assert [_hello(channel) for _ in range(3)] == ["Hello, Ada!"] * 3
        assert not [n for n in process.thread_names() if n.startswith("Dummy-")]
