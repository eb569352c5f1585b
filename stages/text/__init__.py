"""Text front end shared by training and synthesis: `normalize` (English and Mandarin) and `tokenizer`.

    python -m stages.text.normalize en "Dr. Smith paid $5.50."              # try the normaliser
    python -m stages.text.tokenizer results/demo/tokenizer en "Hello."     # try a fitted tokenizer
"""
