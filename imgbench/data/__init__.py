"""Dataset tools: write ImageFolder trees (digits, synthetic) and check them."""
