"""hilreward.models"""
