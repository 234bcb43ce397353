"""Teacher training: GTN (generic teacher over a supernet's students), SFTN and vanilla.

The GTN objective, sampler and branches follow this project's reconstruction of the method
(docs GTN_METHOD.md, "Our design"), not equations from the paper.
"""
