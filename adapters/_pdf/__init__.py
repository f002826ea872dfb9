"""PDF mechanics shared by the upload inspector and the local signer (private to ``adapters``).

* :mod:`.update` opens a file for an incremental update without reusing any object number of the
  original, and proves after a signature that nothing of the original changed.
* :mod:`.repair` finds structural faults of unsigned uploads and normalises them with qpdf (pikepdf).
* :mod:`.signature` adds one visible PAdES signature: the stamp, the field, pyHanko's signer.
* :mod:`.trial` is a throwaway identity the inspector signs with, so an upload is accepted only if
  it can really be signed.

The signer and the inspector run the *same* code path here; that is what makes "accepted means
signable" hold.
"""
