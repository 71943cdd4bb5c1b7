"""The local reference vendor: an Amazon Rekognition look-alike with real face matching.

It speaks Rekognition's JSON 1.1 protocol closely enough that boto3's own
``rekognition`` client works against it unchanged, verifies every request's
SigV4 signature, and detects and matches faces for real with dlib. It exists
so that facegate's tests and demo have a vendor to forward to, offline. It is
not Rekognition: its similarities come from a different model, and it keeps
collections in memory only.

It also speaks Azure Face (``refvendor.azure``) and CompreFace
(``refvendor.compreface``) over the same engine, so that the vendor SDKs of
those protocols can be tested offline too.

- ``refvendor.app.create_app``: the FastAPI app (``python -m refvendor`` serves it)
- ``refvendor.faces``: the dlib face engine
- ``refvendor.samples``: face photos as JPEG bytes for tests and the demo
"""
