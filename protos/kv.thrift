// RPC Lab's running example, the key-value store, as an Apache Thrift service.
//
// The same store as protos/kv.proto describes for gRPC (rpclab.kv.KVStore):
// keys and values are strings, as in Redis, and increment reads a value as a
// decimal integer. Loaded at run time with thriftpy2.load (nothing is
// generated or committed); the Apache Thrift compiler reads it too
// (`thrift --gen py kv.thrift`).
//
// Differences from kv.proto, each forced or suggested by Thrift:
//   * Errors are declared exceptions that the client raises, not status codes.
//   * `delete` is a reserved word in Thrift IDL (it is a keyword in C++ and
//     JavaScript, two of Thrift's target languages), so the call is `remove`.
//   * Arguments are listed like a function's, each with a field id; there are
//     no request and reply messages.
//
// On the wire (rpclab.adapters.thrift): the binary protocol in framed
// transport, i.e. each message is a 4-byte big-endian length and then the
// message -- the same framing as notebook 02.

namespace py rpclab_kv

// get of a key that is not in the store.
exception NotFound {
  1: string key,
  2: string message,
}

// An empty or too long key (over 256 characters), a value over 65,536
// characters, increment of a value that is not an integer, or an increment
// whose result does not fit in an i64.
exception InvalidArgument {
  1: string message,
}

service KV {
  // The value stored at a key.
  string get(1: string key) throws (1: NotFound not_found, 2: InvalidArgument invalid),

  // Store a value at a key, replacing whatever was there.
  void put(1: string key, 2: string value) throws (1: InvalidArgument invalid),

  // Remove a key; return whether it was there. Removing a key that is not
  // there is not an error. (Called delete in the other stacks.)
  bool remove(1: string key) throws (1: InvalidArgument invalid),

  // Add `amount` (1 if not sent; may be negative) to the integer stored at a
  // key (a missing key counts as 0) and return the new value. NOT idempotent:
  // running it twice adds twice.
  i64 increment(1: string key, 2: i64 amount = 1) throws (1: InvalidArgument invalid),

  // Every key, sorted.
  list<string> keys(),
}
