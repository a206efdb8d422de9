"""Part II (notebooks 06-11): gRPC -- protos, servicers, deadlines, errors, flow control, balancing,
security, asyncio."""
