// Module Queue.
