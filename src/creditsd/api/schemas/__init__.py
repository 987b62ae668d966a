"""The HTTP API's request and response bodies, one module per domain; unknown fields are
refused, but in the gateway's bodies, which keep them as their sender wrote them. (The
billing page's portal sessions and the proxy keep theirs in ``web`` and ``proxy``.)"""
