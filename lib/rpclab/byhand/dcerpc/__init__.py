"""DCE/RPC -- the RPC of OSF's Distributed Computing Environment, which Microsoft RPC
implements -- built and read by hand (notebooks 01 and 06; ``rpclab epmap``).

What DCE/RPC added to Sun's RPC: interfaces named by a UUID and a version instead of a
registered program number; NDR, a data representation where the sender writes in its own
byte order and the receiver makes right; an endpoint mapper on port 135; binding handles
and context handles. One module per job:

* :mod:`~rpclab.byhand.dcerpc.ndr` -- reading NDR, bounded by the bytes there;
* :mod:`~rpclab.byhand.dcerpc.pdu` -- the packets: bind, bind_ack, request, response, fault;
* :mod:`~rpclab.byhand.dcerpc.tower` -- protocol towers: where an interface is reached;
* :mod:`~rpclab.byhand.dcerpc.client` -- a connection: bind, then call by operation number;
* :mod:`~rpclab.byhand.dcerpc.epmap` -- the endpoint mapper's ept_lookup, walked.

Specifications: DCE 1.1: Remote Procedure Call (The Open Group, C706, 1997) and Microsoft's
[MS-RPCE] (its extensions).
"""
