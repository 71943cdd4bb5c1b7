"""What the policy needs besides the request: case context, warrants, activity."""
