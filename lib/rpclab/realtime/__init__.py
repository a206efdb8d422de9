"""Notebook 14, real time: a producer that takes a reading every millisecond, streamed over gRPC
to a consumer that measures how old each reading is when it acts on it.

* ``feed``     -- the producer: the Feed service (protos/feed.proto), at a fixed rate, which
  either catches up on missed readings or sends only the newest;
* ``consumer`` -- the consumer: every reading in order, only fresh ones (a deadline per
  message), or only the newest (a bounded queue of one); what each recorded, summarised.
"""
