/*
 * A C client for RPC Lab's key-value store over ONC RPC (Sun RPC), built on the
 * stubs rpcgen writes from protos/kv.x and on libtirpc. It calls every procedure
 * of KV_PROG version 1 once and prints one line per call.
 *
 *   rpcgen -h -o kv.h kv.x && rpcgen -l -o kv_clnt.c kv.x && rpcgen -c -o kv_xdr.c kv.x
 *   gcc -I/usr/include/tirpc -o kv_client kv_client.c kv_clnt.c kv_xdr.c -ltirpc
 *   ./kv_client HOST PORT [sys]
 *
 * PORT 0 asks HOST's portmapper (rpcbind, port 111) where KV_PROG is, as rpcgen's
 * own clients do; any other port is called directly. "sys" sends an AUTH_SYS
 * credential (this process's uid, gid and groups) instead of AUTH_NONE.
 * Exit status 0 when every call got a reply, 1 (and libtirpc's message) otherwise.
 *
 * rpclab.byhand.oncrpc.cclient builds and runs it (notebook 12, tests/test_oncrpc_peers.py).
 */

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "kv.h"

static const char *status_name(kv_status status)
{
    switch (status) {
    case KV_OK:
        return "KV_OK";
    case KV_NOT_FOUND:
        return "KV_NOT_FOUND";
    case KV_INVALID:
        return "KV_INVALID";
    }
    return "?";
}

static void fail(CLIENT *clnt, const char *what)
{
    clnt_perror(clnt, what);
    exit(1);
}

static CLIENT *connect_to(const char *host, int port)
{
    if (port == 0) {
        CLIENT *clnt = clnt_create(host, KV_PROG, KV_V1, "tcp");
        if (clnt == NULL) {
            clnt_pcreateerror(host);
            exit(1);
        }
        return clnt;
    }
    struct addrinfo hints, *found;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &found) != 0) {
        fprintf(stderr, "%s: unknown host\n", host);
        exit(1);
    }
    struct sockaddr_in address;
    memcpy(&address, found->ai_addr, sizeof address);
    freeaddrinfo(found);
    address.sin_port = htons((unsigned short)port);
    int sock = RPC_ANYSOCK;
    CLIENT *clnt = clnttcp_create(&address, KV_PROG, KV_V1, &sock, 0, 0);
    if (clnt == NULL) {
        clnt_pcreateerror(host);
        exit(1);
    }
    return clnt;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s HOST PORT [sys]\n", argv[0]);
        return 2;
    }
    CLIENT *clnt = connect_to(argv[1], atoi(argv[2]));
    struct timeval timeout = {5, 0};
    clnt_control(clnt, CLSET_TIMEOUT, (char *)&timeout);
    if (argc == 4 && strcmp(argv[3], "sys") == 0) {
        auth_destroy(clnt->cl_auth);
        clnt->cl_auth = authsys_create_default();
    }

    if (kv_null_1(NULL, clnt) == NULL)
        fail(clnt, "KV_NULL");
    printf("KV_NULL -> (void)\n");

    put_args put = {"c:greeting", "hello from C"};
    kv_status *put_status = kv_put_1(&put, clnt);
    if (put_status == NULL)
        fail(clnt, "KV_PUT");
    printf("KV_PUT %s \"%s\" -> %s\n", put.key, put.value, status_name(*put_status));

    const char *get_keys[] = {"c:greeting", "c:no-such-key"};
    for (int i = 0; i < 2; i++) {
        kv_key key = (kv_key)get_keys[i];
        get_result *got = kv_get_1(&key, clnt);
        if (got == NULL)
            fail(clnt, "KV_GET");
        if (got->status == KV_OK)
            printf("KV_GET %s -> KV_OK \"%s\"\n", key, got->get_result_u.value);
        else
            printf("KV_GET %s -> %s\n", key, status_name(got->status));
        clnt_freeres(clnt, (xdrproc_t)xdr_get_result, (caddr_t)got);
    }

    incr_args increments[] = {{"c:visits", 5}, {"c:visits", -2}, {"c:greeting", 1}};
    for (int i = 0; i < 3; i++) {
        incr_result *added = kv_increment_1(&increments[i], clnt);
        if (added == NULL)
            fail(clnt, "KV_INCREMENT");
        if (added->status == KV_OK)
            printf("KV_INCREMENT %s %lld -> KV_OK %lld\n", increments[i].key,
                   (long long)increments[i].amount, (long long)added->incr_result_u.value);
        else
            printf("KV_INCREMENT %s %lld -> %s\n", increments[i].key,
                   (long long)increments[i].amount, status_name(added->status));
    }

    kv_keys *keys = kv_keys_1(NULL, clnt);
    if (keys == NULL)
        fail(clnt, "KV_KEYS");
    printf("KV_KEYS -> %u keys:", keys->kv_keys_len);
    for (u_int i = 0; i < keys->kv_keys_len; i++)
        printf(" %s", keys->kv_keys_val[i]);
    printf("\n");
    clnt_freeres(clnt, (xdrproc_t)xdr_kv_keys, (caddr_t)keys);

    for (int i = 0; i < 2; i++) {
        kv_key key = "c:greeting";
        bool_t *existed = kv_delete_1(&key, clnt);
        if (existed == NULL)
            fail(clnt, "KV_DELETE");
        printf("KV_DELETE %s -> %s\n", key, *existed ? "TRUE" : "FALSE");
    }

    clnt_destroy(clnt);
    return 0;
}
