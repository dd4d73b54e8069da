"""models/architectures"""
