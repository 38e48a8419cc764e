# The worked example of docs/profiling.md: a small in-memory index. Documents as dicts with lists of
# words, an inverted index of lists, and a cache of 2000-byte blobs; at its peak it asks for a
# profile and a layout dump (SIGUSR2, RAMALLOC_DUMP_SIGNAL), then drops the documents.
import os
import signal
import time

docs = [{"id": i, "title": f"document {i}", "words": [f"w{(i * 7 + k) % 5000}" for k in range(20)]}
        for i in range(40000)]
index = {}
for d in docs:
    for w in d["words"]:
        index.setdefault(w, []).append(d["id"])
blobs = [bytes(2000) for _ in range(5000)]
os.kill(os.getpid(), signal.SIGUSR2)  # ramalloc's dumper thread writes profile and layout
time.sleep(0.5)
del docs
time.sleep(0.3)
print(len(index), len(blobs))
