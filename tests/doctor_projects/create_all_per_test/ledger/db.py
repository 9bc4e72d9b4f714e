from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

engine = create_engine("sqlite:///./ledger_dev.db")
SessionLocal = sessionmaker(bind=engine)
