"""Step 3: what the policy needs besides the request (warrants, probe inspection, activity
windows, face sources), gathered into one PolicyInput by gather.py. The case context
itself is gateway/case.py, shared with gateway/auth."""
