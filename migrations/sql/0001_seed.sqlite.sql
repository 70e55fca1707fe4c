-- The seed schema (../schema.prisma) for the embedded SQLite default.
-- Same tables, columns, nullability, defaults, keys and index names as the PostgreSQL DDL that
-- Prisma generates; SQLite has no enum types, so each enum column carries a CHECK constraint,
-- TIMESTAMP(3) is stored as DATETIME and JSONB as JSON text. Foreign keys are declared inline
-- because SQLite cannot add them to an existing table.

CREATE TABLE "User" (
    "id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT,
    "githubUsername" TEXT,
    "role" TEXT NOT NULL CHECK ("role" IN ('CLIENT', 'ANALYST', 'PM', 'ARCHITECT', 'UX', 'DEVELOPER', 'QA')),
    "avatarUrl" TEXT,
    "bio" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "User_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "Project" (
    "id" TEXT NOT NULL,
    "clientId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "status" TEXT NOT NULL DEFAULT 'PLANNING' CHECK ("status" IN ('PLANNING', 'IN_DEVELOPMENT', 'COMPLETED', 'CANCELLED')),
    "repoUrl" TEXT,
    "repoName" TEXT,
    "currentStage" TEXT CHECK ("currentStage" IN ('analyst', 'pm', 'architect', 'ux', 'developer', 'qa')),
    "brief" JSON,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Project_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Project_clientId_fkey" FOREIGN KEY ("clientId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "Opportunity" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "stage" TEXT NOT NULL CHECK ("stage" IN ('analyst', 'pm', 'architect', 'ux', 'developer', 'qa')),
    "title" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "budget" JSON NOT NULL,
    "deadline" DATETIME,
    "status" TEXT NOT NULL DEFAULT 'OPEN' CHECK ("status" IN ('OPEN', 'CLOSED', 'COMPLETED')),
    "acceptedBidId" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Opportunity_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Opportunity_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Opportunity_acceptedBidId_fkey" FOREIGN KEY ("acceptedBidId") REFERENCES "Bid" ("id") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE TABLE "Bid" (
    "id" TEXT NOT NULL,
    "opportunityId" TEXT NOT NULL,
    "expertId" TEXT NOT NULL,
    "amount" INTEGER NOT NULL,
    "currency" TEXT NOT NULL,
    "proposal" TEXT NOT NULL,
    "estimatedDuration" INTEGER,
    "status" TEXT NOT NULL DEFAULT 'PENDING' CHECK ("status" IN ('PENDING', 'ACCEPTED', 'REJECTED', 'WITHDRAWN')),
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Bid_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Bid_opportunityId_fkey" FOREIGN KEY ("opportunityId") REFERENCES "Opportunity" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Bid_expertId_fkey" FOREIGN KEY ("expertId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "Story" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "epicNumber" INTEGER NOT NULL,
    "storyNumber" INTEGER NOT NULL,
    "title" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "acceptanceCriteria" TEXT NOT NULL,
    "priority" INTEGER NOT NULL DEFAULT 0,
    "assignedDevId" TEXT,
    "assignedQAId" TEXT,
    "status" TEXT NOT NULL DEFAULT 'DRAFT' CHECK ("status" IN ('DRAFT', 'APPROVED', 'IN_PROGRESS', 'READY_FOR_REVIEW', 'DONE', 'BLOCKED')),
    "devPrUrl" TEXT,
    "devPrNumber" INTEGER,
    "devPrAuthor" TEXT,
    "storyFile" TEXT,
    "validatedAt" DATETIME,
    "validatedBy" TEXT,
    "validationScore" INTEGER,
    "qaGatePath" TEXT,
    "qaGateStatus" TEXT,
    "qaReviewedAt" DATETIME,
    "qaReviewCount" INTEGER NOT NULL DEFAULT 0,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Story_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Story_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Story_assignedDevId_fkey" FOREIGN KEY ("assignedDevId") REFERENCES "User" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "Story_assignedQAId_fkey" FOREIGN KEY ("assignedQAId") REFERENCES "User" ("id") ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE TABLE "Deliverable" (
    "id" TEXT NOT NULL,
    "opportunityId" TEXT,
    "storyId" TEXT,
    "expertId" TEXT NOT NULL,
    "stage" TEXT NOT NULL CHECK ("stage" IN ('analyst', 'pm', 'architect', 'ux', 'developer', 'qa')),
    "prUrl" TEXT NOT NULL,
    "prNumber" INTEGER NOT NULL,
    "prAuthor" TEXT NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'SUBMITTED' CHECK ("status" IN ('SUBMITTED', 'APPROVED', 'CHANGES_REQUESTED', 'REJECTED')),
    "reviewNotes" TEXT,
    "submittedAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "reviewedAt" DATETIME,
    "approvedAt" DATETIME,
    CONSTRAINT "Deliverable_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Deliverable_opportunityId_fkey" FOREIGN KEY ("opportunityId") REFERENCES "Opportunity" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "Deliverable_storyId_fkey" FOREIGN KEY ("storyId") REFERENCES "Story" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "Deliverable_expertId_fkey" FOREIGN KEY ("expertId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "Escrow" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "opportunityId" TEXT,
    "clientId" TEXT NOT NULL,
    "expertId" TEXT NOT NULL,
    "amount" TEXT NOT NULL,
    "currency" TEXT NOT NULL,
    "blockchain" TEXT NOT NULL,
    "platformFee" INTEGER NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'PENDING' CHECK ("status" IN ('PENDING', 'FUNDED', 'RELEASED', 'REFUNDED')),
    "contractAddress" TEXT NOT NULL,
    "transactionHash" TEXT,
    "releaseTransactionHash" TEXT,
    "fundedAt" DATETIME,
    "releasedAt" DATETIME,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" DATETIME NOT NULL,
    CONSTRAINT "Escrow_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Escrow_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Escrow_opportunityId_fkey" FOREIGN KEY ("opportunityId") REFERENCES "Opportunity" ("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "Escrow_clientId_fkey" FOREIGN KEY ("clientId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Escrow_expertId_fkey" FOREIGN KEY ("expertId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "Document" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "uploadedById" TEXT NOT NULL,
    "filename" TEXT NOT NULL,
    "storagePath" TEXT NOT NULL,
    "mimeType" TEXT NOT NULL,
    "size" INTEGER NOT NULL,
    "documentType" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Document_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Document_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Document_uploadedById_fkey" FOREIGN KEY ("uploadedById") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "Rating" (
    "id" TEXT NOT NULL,
    "projectId" TEXT NOT NULL,
    "expertId" TEXT NOT NULL,
    "clientId" TEXT NOT NULL,
    "stage" TEXT NOT NULL CHECK ("stage" IN ('analyst', 'pm', 'architect', 'ux', 'developer', 'qa')),
    "rating" INTEGER NOT NULL,
    "feedback" TEXT,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Rating_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "Rating_projectId_fkey" FOREIGN KEY ("projectId") REFERENCES "Project" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Rating_expertId_fkey" FOREIGN KEY ("expertId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "Rating_clientId_fkey" FOREIGN KEY ("clientId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "ApiKey" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "keyHash" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "lastUsed" DATETIME,
    CONSTRAINT "ApiKey_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "ApiKey_userId_fkey" FOREIGN KEY ("userId") REFERENCES "User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE TABLE "MCPSession" (
    "id" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "userId" TEXT,
    "accessToken" TEXT,
    "expiresAt" DATETIME NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "MCPSession_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "GitHubInstallation" (
    "id" TEXT NOT NULL,
    "installationId" INTEGER NOT NULL,
    "accountId" INTEGER NOT NULL,
    "accountLogin" TEXT NOT NULL,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "GitHubInstallation_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "StoryAuditLog" (
    "id" TEXT NOT NULL,
    "storyId" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "fromStatus" TEXT CHECK ("fromStatus" IN ('DRAFT', 'APPROVED', 'IN_PROGRESS', 'READY_FOR_REVIEW', 'DONE', 'BLOCKED')),
    "toStatus" TEXT CHECK ("toStatus" IN ('DRAFT', 'APPROVED', 'IN_PROGRESS', 'READY_FOR_REVIEW', 'DONE', 'BLOCKED')),
    "metadata" JSON,
    "createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "StoryAuditLog_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "StoryAuditLog_storyId_fkey" FOREIGN KEY ("storyId") REFERENCES "Story" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

CREATE UNIQUE INDEX "User_email_key" ON "User"("email");
CREATE UNIQUE INDEX "User_githubUsername_key" ON "User"("githubUsername");
CREATE INDEX "User_email_idx" ON "User"("email");
CREATE INDEX "User_githubUsername_idx" ON "User"("githubUsername");
CREATE INDEX "User_role_idx" ON "User"("role");
CREATE INDEX "Project_clientId_idx" ON "Project"("clientId");
CREATE INDEX "Project_status_idx" ON "Project"("status");
CREATE INDEX "Project_currentStage_idx" ON "Project"("currentStage");
CREATE UNIQUE INDEX "Opportunity_acceptedBidId_key" ON "Opportunity"("acceptedBidId");
CREATE INDEX "Opportunity_projectId_idx" ON "Opportunity"("projectId");
CREATE INDEX "Opportunity_stage_idx" ON "Opportunity"("stage");
CREATE INDEX "Opportunity_status_idx" ON "Opportunity"("status");
CREATE INDEX "Bid_opportunityId_idx" ON "Bid"("opportunityId");
CREATE INDEX "Bid_expertId_idx" ON "Bid"("expertId");
CREATE INDEX "Bid_status_idx" ON "Bid"("status");
CREATE INDEX "Story_projectId_idx" ON "Story"("projectId");
CREATE INDEX "Story_assignedDevId_idx" ON "Story"("assignedDevId");
CREATE INDEX "Story_assignedQAId_idx" ON "Story"("assignedQAId");
CREATE INDEX "Story_status_idx" ON "Story"("status");
CREATE INDEX "Story_epicNumber_idx" ON "Story"("epicNumber");
CREATE UNIQUE INDEX "Story_projectId_epicNumber_storyNumber_key" ON "Story"("projectId", "epicNumber", "storyNumber");
CREATE INDEX "Deliverable_opportunityId_idx" ON "Deliverable"("opportunityId");
CREATE INDEX "Deliverable_storyId_idx" ON "Deliverable"("storyId");
CREATE INDEX "Deliverable_expertId_idx" ON "Deliverable"("expertId");
CREATE INDEX "Deliverable_status_idx" ON "Deliverable"("status");
CREATE INDEX "Escrow_projectId_idx" ON "Escrow"("projectId");
CREATE INDEX "Escrow_opportunityId_idx" ON "Escrow"("opportunityId");
CREATE INDEX "Escrow_status_idx" ON "Escrow"("status");
CREATE INDEX "Escrow_contractAddress_idx" ON "Escrow"("contractAddress");
CREATE INDEX "Escrow_blockchain_idx" ON "Escrow"("blockchain");
CREATE INDEX "Document_projectId_idx" ON "Document"("projectId");
CREATE INDEX "Document_documentType_idx" ON "Document"("documentType");
CREATE INDEX "Rating_expertId_idx" ON "Rating"("expertId");
CREATE INDEX "Rating_projectId_idx" ON "Rating"("projectId");
CREATE UNIQUE INDEX "ApiKey_keyHash_key" ON "ApiKey"("keyHash");
CREATE INDEX "ApiKey_userId_idx" ON "ApiKey"("userId");
CREATE UNIQUE INDEX "MCPSession_state_key" ON "MCPSession"("state");
CREATE INDEX "MCPSession_state_idx" ON "MCPSession"("state");
CREATE UNIQUE INDEX "GitHubInstallation_installationId_key" ON "GitHubInstallation"("installationId");
CREATE INDEX "GitHubInstallation_installationId_idx" ON "GitHubInstallation"("installationId");
CREATE INDEX "StoryAuditLog_storyId_idx" ON "StoryAuditLog"("storyId");
CREATE INDEX "StoryAuditLog_createdAt_idx" ON "StoryAuditLog"("createdAt");
